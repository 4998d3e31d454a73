package trigger_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/faketest"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

const (
	stateMachineARN = "arn:aws:states:us-west-2:111122223333:stateMachine:databricks-cmk-rotation"
	rotatorRoleARN  = "arn:aws:iam::111122223333:role/databricks-cmk-rotator"

	key1    = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	key2    = "arn:aws:kms:us-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
	key3    = "arn:aws:kms:us-west-2:111122223333:key/5f8e2c1a-3b4d-4e6f-8a9b-0c1d2e3f4a5b"
	key4    = "arn:aws:kms:us-west-2:111122223333:key/6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	govKey1 = "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

// testConfig is loaded the way main loads it, from a map instead of the environment.
func testConfig(t testing.TB) trigger.Config {
	t.Helper()
	env := map[string]string{
		"STATE_MACHINE_ARN":      stateMachineARN,
		"IGNORED_PRINCIPAL_ARNS": rotatorRoleARN,
	}
	cfg, err := trigger.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	return cfg
}

// keyTags are the tags the fake KMS holds, by key ARN.
func keyTags() map[string]map[string]string {
	return map[string]map[string]string{
		key1: {"databricks:workspace": "1234567890123456", "Owner": "platform"},
		key2: {
			"databricks:workspace":                     "2345678901234567+1234567890123456",
			"databricks:use-cases":                     "managed-services/storage",
			"databricks:reuse-key-for-cluster-volumes": "TRUE",
		},
		key3:    {"team": "data"},
		govKey1: {"databricks:workspace": "3456789012345678"},
	}
}

// fakeKMS answers ListResourceTags from a tag table, one page at a time to exercise the marker.
type fakeKMS struct {
	mu    sync.Mutex
	tags  map[string]map[string]string
	err   error
	calls []string
}

func (f *fakeKMS) ListResourceTags(_ context.Context, in *kms.ListResourceTagsInput, _ ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := aws.ToString(in.KeyId)
	f.calls = append(f.calls, id)
	if f.err != nil {
		return nil, f.err
	}
	tags, ok := f.tags[id]
	if !ok {
		return nil, &kmstypes.NotFoundException{Message: aws.String("Key '" + id + "' does not exist")}
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	// Deterministic pages of one tag each.
	sortStrings(keys)
	start := 0
	if in.Marker != nil {
		for i, k := range keys {
			if k == aws.ToString(in.Marker) {
				start = i
			}
		}
	}
	out := &kms.ListResourceTagsOutput{}
	if start < len(keys) {
		k := keys[start]
		out.Tags = []kmstypes.Tag{{TagKey: aws.String(k), TagValue: aws.String(tags[k])}}
		if start+1 < len(keys) {
			out.Truncated = true
			out.NextMarker = aws.String(keys[start+1])
		}
	}
	return out, nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func (f *fakeKMS) lookup() trigger.TagLookup {
	h := &trigger.Handler{KMS: f}
	return h.LookupTags
}

type fakeSFN struct {
	mu     sync.Mutex
	inputs []*sfn.StartExecutionInput
	err    error
}

func (f *fakeSFN) StartExecution(_ context.Context, in *sfn.StartExecutionInput, _ ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inputs = append(f.inputs, in)
	if f.err != nil {
		return nil, f.err
	}
	return &sfn.StartExecutionOutput{ExecutionArn: aws.String("arn:aws:states:us-west-2:111122223333:execution:databricks-cmk-rotation:" + aws.ToString(in.Name))}, nil
}

type fakeEvents struct {
	mu     sync.Mutex
	inputs []*eventbridge.PutEventsInput
	err    error
	out    *eventbridge.PutEventsOutput
}

func (f *fakeEvents) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inputs = append(f.inputs, in)
	if f.err != nil {
		return nil, f.err
	}
	if f.out != nil {
		return f.out, nil
	}
	return &eventbridge.PutEventsOutput{}, nil
}

// safeBuffer collects the handler's JSON log records.
type safeBuffer = faketest.LogBuffer

type harness struct {
	h      *trigger.Handler
	sfn    *fakeSFN
	kms    *fakeKMS
	events *fakeEvents
	logs   *safeBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	logs := &safeBuffer{}
	hs := &harness{sfn: &fakeSFN{}, kms: &fakeKMS{tags: keyTags()}, events: &fakeEvents{}, logs: logs}
	hs.h = &trigger.Handler{
		Config: testConfig(t),
		SFN:    hs.sfn,
		KMS:    hs.kms,
		Events: hs.events,
		Policy: bundledPolicy(t),
		Log:    slog.New(slog.NewJSONHandler(logs, nil)),
	}
	return hs
}

const fixtureDir = "../../events/kms"

func loadFixture(t testing.TB, name string) events.CloudWatchEvent {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, name))
	require.NoError(t, err)
	var ev events.CloudWatchEvent
	require.NoError(t, json.Unmarshal(raw, &ev), name)
	return ev
}

// bundledPolicy is policy/rotation-policy.yaml, which allows the fixtures' workspaces, keys and actors.
func bundledPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Load(func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	return p
}
