package keyguard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keyguard"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

const (
	region       = "us-west-2"
	awsAccount   = "111122223333"
	fixtureKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab"
	fixtureKey   = "arn:aws:kms:us-west-2:111122223333:key/" + fixtureKeyID
	reminderARN  = "arn:aws:states:us-west-2:111122223333:stateMachine:databricks-cmk-retirement-reminder"
	eventBus     = "databricks-cmk-rotator"
	rotatorRole  = "arn:aws:iam::111122223333:role/databricks-cmk-rotator"
	fixtureDir   = "../../events/kms"
)

func testEnv(extra map[string]string) func(string) (string, bool) {
	env := map[string]string{
		"EVENT_BUS_NAME":             eventBus,
		"REMINDER_STATE_MACHINE_ARN": reminderARN,
		"IGNORED_PRINCIPAL_ARNS":     rotatorRole,
	}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func testConfig(t testing.TB, undo bool) keyguard.Config {
	t.Helper()
	extra := map[string]string{}
	if undo {
		extra["UNDO_KEY_CHANGES"] = "true"
	}
	cfg, err := keyguard.LoadConfig(testEnv(extra))
	require.NoError(t, err)
	return cfg
}

// localKMS starts the real local-kms for the test, or skips it when the binary is missing (fails
// it when SANDBOX_REQUIRED=1). Only local-kms is needed here, not the rest of the sandbox tools.
func localKMS(t *testing.T) *kms.Client {
	t.Helper()
	root, err := sandbox.RepoRoot()
	require.NoError(t, err)
	tools, _ := sandbox.FindTools(root)
	if _, err := os.Stat(tools.LocalKMS); err != nil {
		if os.Getenv("SANDBOX_REQUIRED") == "1" {
			t.Fatalf("SANDBOX_REQUIRED=1: local-kms: %v (run `make tools`)", err)
		}
		t.Skipf("local-kms: %v (run `make tools`); set SANDBOX_REQUIRED=1 to make this a failure", err)
	}
	endpoint, stop, err := sandbox.StartLocalKMS(context.Background(), tools.LocalKMS, "", region, awsAccount)
	require.NoError(t, err)
	t.Cleanup(stop)
	return kms.New(kms.Options{Region: region, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")})
}

// recordingKMS is the guard's view of local-kms: it records the calls and can behave like AWS, which
// leaves a key Disabled after CancelKeyDeletion (local-kms leaves it Enabled), or fail one call.
type recordingKMS struct {
	*kms.Client
	awsLikeCancel bool

	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

var _ keyguard.KeyAPI = (*recordingKMS)(nil)

func (r *recordingKMS) record(op string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, op)
	return r.fail[op]
}

func (r *recordingKMS) failNext(op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail == nil {
		r.fail = map[string]error{}
	}
	r.fail[op] = err
}

func (r *recordingKMS) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *recordingKMS) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, opts ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	if err := r.record("DescribeKey"); err != nil {
		return nil, err
	}
	return r.Client.DescribeKey(ctx, in, opts...)
}

func (r *recordingKMS) CancelKeyDeletion(ctx context.Context, in *kms.CancelKeyDeletionInput, opts ...func(*kms.Options)) (*kms.CancelKeyDeletionOutput, error) {
	if err := r.record("CancelKeyDeletion"); err != nil {
		return nil, err
	}
	out, err := r.Client.CancelKeyDeletion(ctx, in, opts...)
	if err == nil && r.awsLikeCancel {
		if _, err := r.Client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: in.KeyId}); err != nil {
			return nil, err
		}
	}
	return out, err
}

func (r *recordingKMS) EnableKey(ctx context.Context, in *kms.EnableKeyInput, opts ...func(*kms.Options)) (*kms.EnableKeyOutput, error) {
	if err := r.record("EnableKey"); err != nil {
		return nil, err
	}
	return r.Client.EnableKey(ctx, in, opts...)
}

func (r *recordingKMS) PutKeyPolicy(ctx context.Context, in *kms.PutKeyPolicyInput, opts ...func(*kms.Options)) (*kms.PutKeyPolicyOutput, error) {
	if err := r.record("PutKeyPolicy"); err != nil {
		return nil, err
	}
	return r.Client.PutKeyPolicy(ctx, in, opts...)
}

// safeBuffer collects the handler's JSON log records.
type safeBuffer = faketest.LogBuffer

// rig is one test's world: local-kms, the Databricks fake, the AWS fake with the reminder state
// machine registered, and the handler wired to them as main wires it.
type rig struct {
	t     *testing.T
	kms   *kms.Client
	guard *recordingKMS
	db    *dbfake.Server
	aws   *awsfake.Server
	sfn   *sfn.Client
	logs  *safeBuffer
	h     *keyguard.Handler
}

func newRig(t *testing.T, undo bool) *rig {
	t.Helper()
	kmsClient := localKMS(t)
	db := faketest.Start(t, dbfake.Options{})
	account, err := faketest.Factory(db).Account()
	require.NoError(t, err)

	fake, err := awsfake.Start(awsfake.Config{Region: region, AccountID: awsAccount})
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	// A reminder waits 24 hours: here it waits until the fake closes at the end of the test.
	fake.RegisterStateMachine(reminderARN, awsfake.RunnerFunc(func(ctx context.Context, _ awsfake.Execution) (string, *awsfake.ExecError) {
		<-ctx.Done()
		return "", &awsfake.ExecError{Error: "Sandbox.Stopped", Cause: "the test ended"}
	}))
	creds := credentials.NewStaticCredentialsProvider("local", "local", "")
	sfnClient := sfn.New(sfn.Options{Region: region, BaseEndpoint: aws.String(fake.URL()), Credentials: creds})
	ebClient := eventbridge.New(eventbridge.Options{Region: region, BaseEndpoint: aws.String(fake.URL()), Credentials: creds})

	r := &rig{t: t, kms: kmsClient, guard: &recordingKMS{Client: kmsClient}, db: db, aws: fake, sfn: sfnClient, logs: &safeBuffer{}}
	r.h = &keyguard.Handler{
		Config:     testConfig(t, undo),
		KMS:        r.guard,
		Account:    account,
		Executions: sfnClient,
		Events:     ebClient,
		Log:        slog.New(slog.NewJSONHandler(r.logs, nil)),
	}
	return r
}

// createKey creates an Enabled symmetric key on local-kms and returns its id and ARN.
func (r *rig) createKey(description string) (id, arn string) {
	r.t.Helper()
	out, err := r.kms.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String(description)})
	require.NoError(r.t, err)
	return aws.ToString(out.KeyMetadata.KeyId), aws.ToString(out.KeyMetadata.Arn)
}

func (r *rig) keyState(arn string) kmstypes.KeyState {
	r.t.Helper()
	out, err := r.kms.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	require.NoError(r.t, err)
	return out.KeyMetadata.KeyState
}

func (r *rig) scheduleDeletion(arn string) {
	r.t.Helper()
	_, err := r.kms.ScheduleKeyDeletion(context.Background(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn), PendingWindowInDays: aws.Int32(20)})
	require.NoError(r.t, err)
	require.Equal(r.t, kmstypes.KeyStatePendingDeletion, r.keyState(arn))
}

func (r *rig) disable(arn string) {
	r.t.Helper()
	_, err := r.kms.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(arn)})
	require.NoError(r.t, err)
	require.Equal(r.t, kmstypes.KeyStateDisabled, r.keyState(arn))
}

// keyConfig registers a key configuration for the key in the Databricks fake.
func (r *rig) keyConfig(arn string, useCases ...provisioning.KeyUseCase) string {
	return r.db.AddKeyConfig(provisioning.CustomerManagedKey{
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: arn, KeyRegion: region},
		UseCases:   useCases,
	})
}

func (r *rig) workspace(id int64, name, managedConfig, storageConfig string) {
	r.db.AddWorkspace(provisioning.Workspace{
		WorkspaceId: id, WorkspaceName: name, DeploymentName: name, AwsRegion: region,
		ManagedServicesCustomerManagedKeyId: managedConfig, StorageCustomerManagedKeyId: storageConfig,
	})
}

// startReminder starts a retirement reminder execution through the real SFN client, with the input
// the rotation state machine gives it.
func (r *rig) startReminder(name string, input map[string]any) string {
	r.t.Helper()
	body, err := json.Marshal(input)
	require.NoError(r.t, err)
	out, err := r.sfn.StartExecution(context.Background(), &sfn.StartExecutionInput{
		StateMachineArn: aws.String(reminderARN), Name: aws.String(name), Input: aws.String(string(body)),
	})
	require.NoError(r.t, err)
	return aws.ToString(out.ExecutionArn)
}

// atRiskEvents returns the published Key In Use At Risk events, decoded.
func (r *rig) atRiskEvents() []keyguard.KeyInUseAtRisk {
	r.t.Helper()
	var out []keyguard.KeyInUseAtRisk
	for _, ev := range r.aws.Events() {
		require.Equal(r.t, rotation.EventSource, ev.Source)
		require.Equal(r.t, rotation.DetailKeyInUseAtRisk, ev.DetailType)
		require.Equal(r.t, eventBus, ev.EventBusName)
		var d keyguard.KeyInUseAtRisk
		require.NoError(r.t, json.Unmarshal([]byte(ev.Detail), &d))
		require.Equal(r.t, []string{d.KeyARN}, ev.Resources)
		out = append(out, d)
	}
	return out
}

// fixture reads an event from events/kms with the fixture key id replaced by keyID.
func fixture(t testing.TB, name, keyID string) events.CloudWatchEvent {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, name))
	require.NoError(t, err)
	if keyID != "" {
		raw = bytes.ReplaceAll(raw, []byte(fixtureKeyID), []byte(keyID))
	}
	var ev events.CloudWatchEvent
	require.NoError(t, json.Unmarshal(raw, &ev), name)
	return ev
}

// editDetail changes the CloudTrail record of an event.
func editDetail(t testing.TB, ev events.CloudWatchEvent, edit func(detail map[string]any)) events.CloudWatchEvent {
	t.Helper()
	var detail map[string]any
	require.NoError(t, json.Unmarshal(ev.Detail, &detail))
	edit(detail)
	raw, err := json.Marshal(detail)
	require.NoError(t, err)
	ev.Detail = raw
	return ev
}
