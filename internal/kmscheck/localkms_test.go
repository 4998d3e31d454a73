package kmscheck_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

const (
	localRegion  = "us-west-2"
	localAccount = "111122223333"
)

// localKMSBinary finds the pinned local-kms that `make tools` installs into .tools/bin.
func localKMSBinary(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("LOCAL_KMS_BIN"), filepath.Join("..", "..", ".tools", "bin", "local-kms")}
	if p, err := exec.LookPath("local-kms"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			abs, err := filepath.Abs(c)
			require.NoError(t, err)
			return abs
		}
	}
	if os.Getenv("SANDBOX_REQUIRED") == "1" {
		t.Fatal("local-kms binary not found in .tools/bin or PATH: run make tools")
	}
	t.Skip("local-kms binary not found in .tools/bin or PATH (run make tools); set SANDBOX_REQUIRED=1 to make this a failure")
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// lockedBuffer collects the server's output for a failure message without racing its writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLocalKMS runs local-kms on a free loopback port with a throwaway data dir and returns a
// client for it. The process is stopped when the test ends.
func startLocalKMS(t *testing.T) *kms.Client {
	t.Helper()
	bin := localKMSBinary(t)
	dataDir := t.TempDir()
	port := freePort(t)
	out := &lockedBuffer{}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("PORT=%d", port),
		"KMS_REGION="+localRegion,
		"KMS_ACCOUNT_ID="+localAccount,
		"KMS_DATA_PATH="+dataDir,
		"KMS_SEED_PATH="+filepath.Join(dataDir, "no-seed.yaml"),
	)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("local-kms output:\n%s", out.String())
		}
	})

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("local-kms did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return kms.New(kms.Options{
		Region:       localRegion,
		BaseEndpoint: aws.String("http://" + addr),
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
}

func createKey(t *testing.T, c *kms.Client, in *kms.CreateKeyInput) string {
	t.Helper()
	out, err := c.CreateKey(context.Background(), in)
	require.NoError(t, err)
	return aws.ToString(out.KeyMetadata.Arn)
}

func TestCheckAgainstLocalKMS(t *testing.T) {
	client := startLocalKMS(t)
	ctx := context.Background()
	checker := kmscheck.Checker{ClientFor: func(region string) kmscheck.API {
		require.Equal(t, localRegion, region)
		return client
	}}

	good := createKey(t, client, &kms.CreateKeyInput{Policy: aws.String(vendorPolicy(databricksAccount)), Description: aws.String("good")})
	noDatabricks := createKey(t, client, &kms.CreateKeyInput{Policy: aws.String(adminOnlyPolicy)})
	otherAccount := createKey(t, client, &kms.CreateKeyInput{Policy: aws.String(vendorPolicy("9f1c2b3a-0000-4000-8000-000000000001"))})

	disabled := createKey(t, client, &kms.CreateKeyInput{Policy: aws.String(vendorPolicy(databricksAccount))})
	_, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(disabled)})
	require.NoError(t, err)

	pendingDeletion := createKey(t, client, &kms.CreateKeyInput{Policy: aws.String(vendorPolicy(databricksAccount))})
	_, err = client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(pendingDeletion), PendingWindowInDays: aws.Int32(7)})
	require.NoError(t, err)

	asymmetric := createKey(t, client, &kms.CreateKeyInput{
		Policy: aws.String(vendorPolicy(databricksAccount)), KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify,
	})

	_, err = client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/databricks/good"), TargetKeyId: aws.String(good)})
	require.NoError(t, err)
	goodAlias := "arn:aws:kms:" + localRegion + ":" + localAccount + ":alias/databricks/good"

	missing := "arn:aws:kms:" + localRegion + ":" + localAccount + ":key/00000000-0000-4000-8000-000000000000"
	missingAlias := "arn:aws:kms:" + localRegion + ":" + localAccount + ":alias/databricks/nope"

	tests := []struct {
		name     string
		arn      string
		useCases []string
		want     error
		reason   []string
		wantKey  func(t *testing.T, k kmscheck.Key)
	}{
		{
			name: "an enabled key with the vendor's policy passes",
			arn:  good,
			wantKey: func(t *testing.T, k kmscheck.Key) {
				assert.Equal(t, good, k.ARN)
				assert.Equal(t, "Enabled", k.State)
				assert.Equal(t, "SYMMETRIC_DEFAULT", k.Spec)
				assert.Equal(t, "ENCRYPT_DECRYPT", k.Usage)
				assert.Equal(t, localRegion, k.Region)
				assert.Equal(t, localAccount, k.Account)
			},
		},
		{
			name: "an alias ARN resolves to its key and passes",
			arn:  goodAlias,
			wantKey: func(t *testing.T, k kmscheck.Key) {
				assert.Equal(t, good, k.ARN)
				assert.Equal(t, "alias/databricks/good", k.AliasName)
			},
		},
		{
			name:     "the managed services policy is rejected for STORAGE",
			arn:      good,
			useCases: []string{rotation.UseCaseStorage},
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"kms:ReEncrypt*, kms:GenerateDataKey*, kms:DescribeKey"},
		},
		{
			name:   "a key whose policy does not name Databricks is rejected",
			arn:    noDatabricks,
			want:   &taskerr.KeyPolicyRejected{},
			reason: []string{"does not allow the Databricks control plane (arn:aws:iam::414351767826:root) kms:Encrypt, kms:Decrypt"},
		},
		{
			name:   "a key whose policy is scoped to another Databricks account is rejected",
			arn:    otherAccount,
			want:   &taskerr.KeyPolicyRejected{},
			reason: []string{"grants them only to Databricks account(s) 9f1c2b3a-0000-4000-8000-000000000001"},
		},
		{
			name:   "a disabled key is not usable",
			arn:    disabled,
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"is Disabled, not Enabled"},
		},
		{
			name:   "a key pending deletion is not usable",
			arn:    pendingDeletion,
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"is PendingDeletion, not Enabled", "scheduled for deletion"},
		},
		{
			name:   "an RSA signing key is not usable",
			arn:    asymmetric,
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"key spec RSA_2048 and key usage SIGN_VERIFY"},
		},
		{
			name:   "a key that does not exist is not usable",
			arn:    missing,
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"key " + missing + " does not exist in us-west-2"},
		},
		{
			name:   "an alias that does not exist is not usable",
			arn:    missingAlias,
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"does not exist in us-west-2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := managedServices()
			if tt.useCases != nil {
				req.UseCases = tt.useCases
			}
			key, err := checker.Check(ctx, tt.arn, req)
			if tt.want == nil {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Equal(t, taskerr.Name(tt.want), taskerr.Name(err), "reason: %v", err)
				for _, s := range tt.reason {
					assert.Contains(t, err.Error(), s)
				}
			}
			if tt.wantKey != nil {
				tt.wantKey(t, key)
			}
		})
	}
}

func TestCheckAgainstLocalKMSKeyPendingImport(t *testing.T) {
	client := startLocalKMS(t)
	arn := createKey(t, client, &kms.CreateKeyInput{Policy: aws.String(vendorPolicy(databricksAccount)), Origin: types.OriginTypeExternal})
	checker := kmscheck.Checker{ClientFor: func(string) kmscheck.API { return client }}
	_, err := checker.Check(context.Background(), arn, managedServices())
	var notUsable *taskerr.KeyNotUsable
	require.ErrorAs(t, err, &notUsable)
	assert.Contains(t, notUsable.Reason, "is PendingImport, not Enabled")
}
