package kmscheck_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

const (
	databricksAccount = "0d26daa6-5e44-4c97-a497-ef015f91254a"
	keyID             = "1234abcd-12ab-34cd-56ef-1234567890ab"
	keyARN            = "arn:aws:kms:us-west-2:111122223333:key/" + keyID
	aliasARN          = "arn:aws:kms:us-west-2:111122223333:alias/databricks/prod"
)

// vendorPolicy is the account admin statement plus the Databricks managed services statement.
func vendorPolicy(account string) string {
	return `{"Version":"2012-10-17","Statement":[` +
		`{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},` +
		`{"Sid":"Allow Databricks to use KMS key for managed services in the control plane","Effect":"Allow",` +
		`"Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*",` +
		`"Condition":{"StringEquals":{"aws:PrincipalTag/DatabricksAccountId":["` + account + `"]}}}]}`
}

const adminOnlyPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}`

func managedServices() keypolicy.Requirement {
	return keypolicy.Requirement{DatabricksAccountID: databricksAccount, UseCases: []string{rotation.UseCaseManagedServices}}
}

// fakeKMS is a hand-written KMS of one region: keys by ARN, aliases by ARN, policies by key ARN,
// and an error to return per operation.
type fakeKMS struct {
	mu          sync.Mutex
	keys        map[string]types.KeyMetadata
	aliases     map[string]string
	policies    map[string]string
	describeErr error
	policyErr   error
	calls       []string
}

var _ kmscheck.API = (*fakeKMS)(nil)

func newFake() *fakeKMS {
	return &fakeKMS{
		keys: map[string]types.KeyMetadata{keyARN: {
			Arn: aws.String(keyARN), KeyId: aws.String(keyID), KeyState: types.KeyStateEnabled,
			KeySpec: types.KeySpecSymmetricDefault, KeyUsage: types.KeyUsageTypeEncryptDecrypt,
			KeyManager: types.KeyManagerTypeCustomer, MultiRegion: aws.Bool(false),
		}},
		aliases:  map[string]string{aliasARN: keyARN},
		policies: map[string]string{keyARN: vendorPolicy(databricksAccount)},
	}
}

func (f *fakeKMS) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := aws.ToString(in.KeyId)
	f.calls = append(f.calls, "DescribeKey "+id)
	if f.describeErr != nil {
		return nil, f.describeErr
	}
	if target, ok := f.aliases[id]; ok {
		id = target
	}
	md, ok := f.keys[id]
	if !ok {
		return nil, &types.NotFoundException{Message: aws.String("Invalid keyId " + id)}
	}
	return &kms.DescribeKeyOutput{KeyMetadata: &md}, nil
}

func (f *fakeKMS) GetKeyPolicy(_ context.Context, in *kms.GetKeyPolicyInput, _ ...func(*kms.Options)) (*kms.GetKeyPolicyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "GetKeyPolicy "+aws.ToString(in.KeyId)+" "+aws.ToString(in.PolicyName))
	if f.policyErr != nil {
		return nil, f.policyErr
	}
	p, ok := f.policies[aws.ToString(in.KeyId)]
	if !ok {
		return nil, &types.NotFoundException{Message: aws.String("no policy")}
	}
	return &kms.GetKeyPolicyOutput{Policy: aws.String(p), PolicyName: aws.String("default")}, nil
}

func checkerFor(f *fakeKMS, regions *[]string) kmscheck.Checker {
	return kmscheck.Checker{ClientFor: func(region string) kmscheck.API {
		if regions != nil {
			*regions = append(*regions, region)
		}
		return f
	}}
}

func TestCheckAcceptsAnEnabledSymmetricKeyWithTheVendorPolicy(t *testing.T) {
	f := newFake()
	var regions []string
	key, err := checkerFor(f, &regions).Check(context.Background(), keyARN, managedServices())
	require.NoError(t, err)
	assert.Equal(t, kmscheck.Key{
		ARN: keyARN, KeyID: keyID, Region: "us-west-2", Account: "111122223333", Partition: "aws",
		State: "Enabled", Spec: "SYMMETRIC_DEFAULT", Usage: "ENCRYPT_DECRYPT", Policy: key.Policy,
	}, key)
	assert.Contains(t, key.Policy, "414351767826", "the accepted policy, for the snapshot Validate stores")
	assert.Equal(t, []string{"us-west-2"}, regions)
	assert.Equal(t, []string{"DescribeKey " + keyARN, "GetKeyPolicy " + keyARN + " default"}, f.calls)
}

func TestCheckResolvesAnAliasARNToItsKey(t *testing.T) {
	f := newFake()
	key, err := checkerFor(f, nil).Check(context.Background(), aliasARN, managedServices())
	require.NoError(t, err)
	assert.Equal(t, keyARN, key.ARN)
	assert.Equal(t, keyID, key.KeyID)
	assert.Equal(t, "alias/databricks/prod", key.AliasName)
	assert.Equal(t, []string{"DescribeKey " + aliasARN, "GetKeyPolicy " + keyARN + " default"}, f.calls, "the policy is read from the resolved key")
}

func TestCheckUsesTheClientOfTheKeysRegion(t *testing.T) {
	f := newFake()
	govARN := "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/" + keyID
	f.keys[govARN] = f.keys[keyARN]
	var regions []string
	req := managedServices()
	req.GovCloudShard = keypolicy.ShardCivilian
	_, err := checkerFor(f, &regions).Check(context.Background(), govARN, req)
	require.Error(t, err, "the fake's policy names the commercial principal")
	assert.Equal(t, []string{"us-gov-west-1"}, regions)
	var rejected *taskerr.KeyPolicyRejected
	require.ErrorAs(t, err, &rejected)
	assert.Contains(t, rejected.Reason, "arn:aws-us-gov:iam::044793339203:root", "the partition defaults to the key's")
}

func TestCheckMapsAWSErrors(t *testing.T) {
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded", Fault: smithy.FaultClient}
	tests := []struct {
		name        string
		describeErr error
		policyErr   error
		want        error
		reason      []string
	}{
		{
			name:        "a missing key is not usable and the reason names the region",
			describeErr: &types.NotFoundException{Message: aws.String("Key '" + keyARN + "' does not exist")},
			want:        &taskerr.KeyNotUsable{},
			reason:      []string{"key " + keyARN + " does not exist in us-west-2"},
		},
		{
			name:        "access denied on DescribeKey names kms:DescribeKey",
			describeErr: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User is not authorized", Fault: smithy.FaultClient},
			want:        &taskerr.KeyNotUsable{},
			reason:      []string{"not allowed kms:DescribeKey on key " + keyARN, "IAM role", "key policy"},
		},
		{
			name:      "access denied on GetKeyPolicy names kms:GetKeyPolicy",
			policyErr: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User is not authorized", Fault: smithy.FaultClient},
			want:      &taskerr.KeyNotUsable{},
			reason:    []string{"not allowed kms:GetKeyPolicy"},
		},
		{
			name:        "throttling is AWSUnavailable",
			describeErr: throttled,
			want:        &taskerr.AWSUnavailable{},
			reason:      []string{"ThrottlingException"},
		},
		{
			name:        "throttling that exhausted the SDK's retries is AWSUnavailable",
			describeErr: &retry.MaxAttemptsError{Attempt: 3, Err: throttled},
			want:        &taskerr.AWSUnavailable{},
		},
		{
			name:        "a KMS internal error is AWSUnavailable",
			describeErr: &types.KMSInternalException{Message: aws.String("internal")},
			want:        &taskerr.AWSUnavailable{},
		},
		{
			name:      "an unknown server fault on GetKeyPolicy is AWSUnavailable",
			policyErr: &smithy.GenericAPIError{Code: "Whatever", Message: "boom", Fault: smithy.FaultServer},
			want:      &taskerr.AWSUnavailable{},
		},
		{
			name:        "a network failure is AWSUnavailable",
			describeErr: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}},
			want:        &taskerr.AWSUnavailable{},
			reason:      []string{"failed transiently", "connection refused"},
		},
		{
			name:        "a deadline is AWSUnavailable",
			describeErr: context.DeadlineExceeded,
			want:        &taskerr.AWSUnavailable{},
		},
		{
			name:        "an invalid ARN refused by KMS is InvalidInput",
			describeErr: &types.InvalidArnException{Message: aws.String("bad arn")},
			want:        &taskerr.InvalidInput{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.describeErr, f.policyErr = tt.describeErr, tt.policyErr
			_, err := checkerFor(f, nil).Check(context.Background(), keyARN, managedServices())
			require.Error(t, err)
			assert.Equal(t, taskerr.Name(tt.want), taskerr.Name(err), "reason: %v", err)
			for _, s := range tt.reason {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestCheckRefusesKeysThatCannotServeDatabricks(t *testing.T) {
	deletion := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		edit   func(md *types.KeyMetadata, f *fakeKMS)
		req    func(r *keypolicy.Requirement)
		want   error
		reason []string
	}{
		{
			name:   "a disabled key names its state",
			edit:   func(md *types.KeyMetadata, _ *fakeKMS) { md.KeyState = types.KeyStateDisabled },
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"is Disabled, not Enabled", "kms:EnableKey"},
		},
		{
			name: "a key pending deletion names its state and date",
			edit: func(md *types.KeyMetadata, _ *fakeKMS) {
				md.KeyState, md.DeletionDate = types.KeyStatePendingDeletion, &deletion
			},
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"is PendingDeletion, not Enabled", "2030-01-02T03:04:05Z"},
		},
		{
			name:   "a key pending import names its state",
			edit:   func(md *types.KeyMetadata, _ *fakeKMS) { md.KeyState = types.KeyStatePendingImport },
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"is PendingImport"},
		},
		{
			name: "an asymmetric signing key names its spec and usage",
			edit: func(md *types.KeyMetadata, _ *fakeKMS) {
				md.KeySpec, md.KeyUsage = types.KeySpecRsa2048, types.KeyUsageTypeSignVerify
			},
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"key spec RSA_2048 and key usage SIGN_VERIFY"},
		},
		{
			name: "an HMAC key names its spec and usage",
			edit: func(md *types.KeyMetadata, _ *fakeKMS) {
				md.KeySpec, md.KeyUsage = types.KeySpecHmac256, types.KeyUsageTypeGenerateVerifyMac
			},
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"key spec HMAC_256 and key usage GENERATE_VERIFY_MAC"},
		},
		{
			name:   "an AWS managed key is refused",
			edit:   func(md *types.KeyMetadata, _ *fakeKMS) { md.KeyManager = types.KeyManagerTypeAws },
			want:   &taskerr.KeyNotUsable{},
			reason: []string{"AWS managed key"},
		},
		{
			name:   "a policy without Databricks is rejected and the reason names the key",
			edit:   func(_ *types.KeyMetadata, f *fakeKMS) { f.policies[keyARN] = adminOnlyPolicy },
			want:   &taskerr.KeyPolicyRejected{},
			reason: []string{"key " + keyARN + ": key policy does not allow the Databricks control plane (arn:aws:iam::414351767826:root) kms:Encrypt, kms:Decrypt"},
		},
		{
			name:   "a managed services policy is rejected for STORAGE",
			req:    func(r *keypolicy.Requirement) { r.UseCases = []string{rotation.UseCaseStorage} },
			want:   &taskerr.KeyPolicyRejected{},
			reason: []string{"kms:ReEncrypt*, kms:GenerateDataKey*, kms:DescribeKey"},
		},
		{
			name:   "a requirement for another partition is invalid input",
			req:    func(r *keypolicy.Requirement) { r.Partition = "aws-us-gov" },
			want:   &taskerr.InvalidInput{},
			reason: []string{"is in partition aws, but the rotation is for partition aws-us-gov"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			if tt.edit != nil {
				md := f.keys[keyARN]
				tt.edit(&md, f)
				f.keys[keyARN] = md
			}
			req := managedServices()
			if tt.req != nil {
				tt.req(&req)
			}
			key, err := checkerFor(f, nil).Check(context.Background(), keyARN, req)
			require.Error(t, err)
			assert.Equal(t, taskerr.Name(tt.want), taskerr.Name(err), "reason: %v", err)
			for _, s := range tt.reason {
				assert.Contains(t, err.Error(), s)
			}
			assert.Equal(t, keyARN, key.ARN, "what was learned is returned with the refusal")
		})
	}
}

func TestParseKeyARN(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   kmscheck.KeyARN
		reason string // non-empty: want InvalidInput containing this
	}{
		{name: "a commercial key ARN", in: keyARN, want: kmscheck.KeyARN{Partition: "aws", Region: "us-west-2", Account: "111122223333", KeyID: keyID}},
		{name: "a GovCloud key ARN", in: "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/" + keyID, want: kmscheck.KeyARN{Partition: "aws-us-gov", Region: "us-gov-west-1", Account: "111122223333", KeyID: keyID}},
		{name: "a China key ARN", in: "arn:aws-cn:kms:cn-north-1:111122223333:key/" + keyID, want: kmscheck.KeyARN{Partition: "aws-cn", Region: "cn-north-1", Account: "111122223333", KeyID: keyID}},
		{name: "a multi-Region key ARN", in: "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", want: kmscheck.KeyARN{Partition: "aws", Region: "eu-west-1", Account: "111122223333", KeyID: "mrk-1234abcd12ab34cd56ef1234567890ab"}},
		{name: "an alias ARN", in: aliasARN, want: kmscheck.KeyARN{Partition: "aws", Region: "us-west-2", Account: "111122223333", IsAlias: true, AliasName: "alias/databricks/prod"}},
		{name: "an empty string", in: "", reason: `key_arn "" is not a KMS key or alias ARN: it is not an ARN`},
		{name: "a bare key id", in: keyID, reason: "it is not an ARN"},
		{name: "an alias name without ARN", in: "alias/databricks/prod", reason: "it is not an ARN"},
		{name: "an S3 ARN", in: "arn:aws:s3:us-west-2:111122223333:key/" + keyID, reason: `service "s3" is not kms`},
		{name: "an unknown partition", in: "arn:aws-iso:kms:us-iso-east-1:111122223333:key/" + keyID, reason: `partition "aws-iso"`},
		{name: "a missing region", in: "arn:aws:kms::111122223333:key/" + keyID, reason: `region "" is not an AWS region`},
		{name: "an 11-digit account", in: "arn:aws:kms:us-west-2:11112222333:key/" + keyID, reason: `account "11112222333" is not a 12-digit`},
		{name: "a key id that is not a UUID", in: "arn:aws:kms:us-west-2:111122223333:key/not-a-key", reason: `key id "not-a-key"`},
		{name: "a keys/ resource", in: "arn:aws:kms:us-west-2:111122223333:keys/" + keyID, reason: "is neither key/<key-id> nor alias/<name>"},
		{name: "an alias with a space", in: "arn:aws:kms:us-west-2:111122223333:alias/data bricks", reason: `alias "alias/data bricks"`},
		{name: "an empty alias", in: "arn:aws:kms:us-west-2:111122223333:alias/", reason: `alias "alias/"`},
		{name: "an alias of the longest name KMS allows", in: "arn:aws:kms:us-west-2:111122223333:alias/" + strings.Repeat("a/_-9Z", 41) + "abcd",
			want: kmscheck.KeyARN{Partition: "aws", Region: "us-west-2", Account: "111122223333", IsAlias: true, AliasName: "alias/" + strings.Repeat("a/_-9Z", 41) + "abcd"}},
		{name: "an alias one character too long", in: "arn:aws:kms:us-west-2:111122223333:alias/" + strings.Repeat("a", 251), reason: `alias "alias/aaaa`},
		{name: "an alias with a dot", in: "arn:aws:kms:us-west-2:111122223333:alias/data.bricks", reason: `alias "alias/data.bricks"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kmscheck.ParseKeyARN(tt.in)
			if tt.reason == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				assert.Equal(t, tt.in, got.String(), "String round-trips")
				return
			}
			var invalid *taskerr.InvalidInput
			require.ErrorAs(t, err, &invalid)
			assert.True(t, strings.HasPrefix(invalid.Reason, "key_arn "), invalid.Reason)
			assert.Contains(t, invalid.Reason, tt.reason)
		})
	}
}
