package keypolicy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

const (
	accountID = "0d26daa6-5e44-4c97-a497-ef015f91254a"
	otherID   = "9f1c2b3a-0000-4000-8000-000000000001"
	keyARN    = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

	adminStatement = `{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`

	// The statements below are the vendor's, as the Databricks docs and the SRA publish them.
	vendorManagedServices = `{"Sid":"Allow Databricks to use KMS key for managed services in the control plane","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/DatabricksAccountId":["` + accountID + `"]}}}`
	vendorDBFS            = `{"Sid":"Allow Databricks to use KMS key for DBFS","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey*","kms:DescribeKey"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/DatabricksAccountId":["` + accountID + `"]}}}`
	vendorEBS             = `{"Sid":"Allow Databricks to use KMS key for EBS","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/databricks-cross-account"},"Action":["kms:Decrypt","kms:GenerateDataKey*","kms:CreateGrant","kms:DescribeKey"],"Resource":"*","Condition":{"ForAnyValue:StringLike":{"kms:ViaService":"ec2.*.amazonaws.com"}}}`
	vendorGrants          = `{"Sid":"Allow Databricks to use KMS key for DBFS (Grants)","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:CreateGrant","kms:ListGrants","kms:RevokeGrant"],"Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":"true"}}}`
)

func policy(statements ...string) string {
	return `{"Version":"2012-10-17","Id":"key-policy","Statement":[` + strings.Join(statements, ",") + `]}`
}

// allow builds an Allow statement; condition is the raw Condition object or "".
func allow(sid, principal, actions, condition string) string {
	s := `{"Sid":"` + sid + `","Effect":"Allow","Principal":` + principal + `,"Action":` + actions + `,"Resource":"*"`
	if condition != "" {
		s += `,"Condition":` + condition
	}
	return s + `}`
}

func scopedTo(ids ...string) string {
	return `{"StringEquals":{"aws:PrincipalTag/DatabricksAccountId":["` + strings.Join(ids, `","`) + `"]}}`
}

const crossAccountRole = "arn:aws:iam::111122223333:role/databricks-cross-account"

const databricksAWS = `{"AWS":"arn:aws:iam::414351767826:root"}`

var (
	managed = []string{rotation.UseCaseManagedServices}
	storage = []string{rotation.UseCaseStorage}
	both    = []string{rotation.UseCaseManagedServices, rotation.UseCaseStorage}
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name         string
		policy       string
		partition    string // default aws
		shard        string // GovCloud shard
		volumeRoles  []string
		useCases     []string
		allowMissing bool
		keyARN       string
		// want is nil for an accepted policy, else the expected error type.
		want error
		// reason holds substrings the Reason must contain.
		reason []string
		// reasonPrefix, when set, must start the Reason.
		reasonPrefix string
	}{
		{
			name:     "the vendor's managed services policy is accepted for MANAGED_SERVICES",
			policy:   policy(adminStatement, vendorManagedServices),
			useCases: managed,
		},
		{
			name:     "the vendor's storage policy with its EBS and grants statements is accepted for STORAGE",
			policy:   policy(adminStatement, vendorDBFS, vendorEBS, vendorGrants),
			useCases: storage,
		},
		{
			name:     "the vendor's combined policy is accepted for both use cases",
			policy:   policy(adminStatement, vendorManagedServices, vendorDBFS, vendorEBS, vendorGrants),
			useCases: both,
		},
		{
			name:     "no use cases means MANAGED_SERVICES",
			policy:   policy(adminStatement, vendorManagedServices),
			useCases: nil,
		},
		{
			name:     "the managed services statement alone is rejected for STORAGE, naming the storage actions",
			policy:   policy(adminStatement, vendorManagedServices),
			useCases: storage,
			want:     &taskerr.KeyPolicyRejected{},
			reasonPrefix: "key policy does not allow the Databricks control plane (arn:aws:iam::414351767826:root) " +
				"kms:ReEncrypt*, kms:GenerateDataKey*, kms:DescribeKey for use case STORAGE; add a statement ",
		},
		{
			name:     "a policy without kms:Decrypt is rejected naming kms:Decrypt and the statement to add",
			policy:   policy(adminStatement, allow("ms", databricksAWS, `["kms:Encrypt"]`, scopedTo(accountID))),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reasonPrefix: `key policy does not allow the Databricks control plane (arn:aws:iam::414351767826:root) kms:Decrypt for use case MANAGED_SERVICES; ` +
				`add a statement {"Sid":"Allow Databricks to use the key","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},` +
				`"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/DatabricksAccountId":["` + accountID + `"]}}}`,
		},
		{
			name:     "a policy with no Databricks statement is rejected naming every action",
			policy:   policy(adminStatement),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"(arn:aws:iam::414351767826:root) kms:Encrypt, kms:Decrypt for use case MANAGED_SERVICES"},
		},
		{
			name:     "an unscoped partial grant is reported as missing actions and as lacking the condition",
			policy:   policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`, "")),
			useCases: storage,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"kms:ReEncrypt*, kms:GenerateDataKey*, kms:DescribeKey", `(statement "ms" also lacks the aws:PrincipalTag/DatabricksAccountId condition)`},
		},
		{
			name:     "kms:* covers every storage action",
			policy:   policy(allow("all", databricksAWS, `"kms:*"`, scopedTo(accountID))),
			useCases: both,
		},
		{
			name:     "a bare * action covers every action",
			policy:   policy(allow("all", databricksAWS, `"*"`, scopedTo(accountID))),
			useCases: storage,
		},
		{
			name: "actions split across two scoped statements are accepted",
			policy: policy(
				allow("enc", databricksAWS, `"kms:Encrypt"`, scopedTo(accountID)),
				allow("dec", databricksAWS, `["kms:Decrypt"]`, scopedTo(accountID)),
			),
			useCases: managed,
		},
		{
			name:     "a bare 12-digit account id principal counts",
			policy:   policy(allow("ms", `{"AWS":"414351767826"}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			useCases: managed,
		},
		{
			name:     "a principal list containing Databricks counts",
			policy:   policy(allow("ms", `{"AWS":["arn:aws:iam::111122223333:root","arn:aws:iam::414351767826:root"]}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			useCases: managed,
		},
		{
			name:      "the GovCloud civilian principal is accepted in aws-us-gov",
			policy:    policy(allow("ms", `{"AWS":"arn:aws-us-gov:iam::044793339203:root"}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			partition: "aws-us-gov",
			shard:     keypolicy.ShardCivilian,
			useCases:  managed,
		},
		{
			name:      "the GovCloud DoD principal as a bare account id is accepted in aws-us-gov",
			policy:    policy(allow("ms", `{"AWS":"170661010020"}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			partition: "aws-us-gov",
			shard:     keypolicy.ShardDoD,
			useCases:  managed,
		},
		{
			name:      "the commercial principal does not count in GovCloud and the reason names the shard's principal",
			policy:    policy(vendorManagedServices),
			partition: "aws-us-gov",
			shard:     keypolicy.ShardCivilian,
			useCases:  managed,
			want:      &taskerr.KeyPolicyRejected{},
			reason:    []string{"the Databricks GovCloud control plane (arn:aws-us-gov:iam::044793339203:root) kms:Encrypt, kms:Decrypt"},
		},
		{
			name:      "a partial GovCloud DoD grant is reported against the DoD principal",
			policy:    policy(allow("ms", `{"AWS":"arn:aws-us-gov:iam::170661010020:root"}`, `"kms:Encrypt"`, scopedTo(accountID))),
			partition: "aws-us-gov",
			shard:     keypolicy.ShardDoD,
			useCases:  managed,
			want:      &taskerr.KeyPolicyRejected{},
			reason:    []string{"the Databricks GovCloud DoD control plane (arn:aws-us-gov:iam::170661010020:root) kms:Decrypt"},
		},
		{
			name:      "a grant to the DoD principal does not count for a civilian GovCloud account",
			policy:    policy(allow("ms", `{"AWS":"arn:aws-us-gov:iam::170661010020:root"}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			partition: "aws-us-gov",
			shard:     keypolicy.ShardCivilian,
			useCases:  managed,
			want:      &taskerr.KeyPolicyRejected{},
			reason:    []string{"(arn:aws-us-gov:iam::044793339203:root) kms:Encrypt, kms:Decrypt"},
		},
		{
			name:      "a grant to the civilian principal does not count for a DoD GovCloud account",
			policy:    policy(allow("ms", `{"AWS":"arn:aws-us-gov:iam::044793339203:root"}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			partition: "aws-us-gov",
			shard:     keypolicy.ShardDoD,
			useCases:  managed,
			want:      &taskerr.KeyPolicyRejected{},
			reason:    []string{"(arn:aws-us-gov:iam::170661010020:root) kms:Encrypt, kms:Decrypt"},
		},
		{
			name:      "GovCloud without a known shard is invalid input naming the shard",
			policy:    policy(allow("ms", `{"AWS":"arn:aws-us-gov:iam::044793339203:root"}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			partition: "aws-us-gov",
			useCases:  managed,
			want:      &taskerr.InvalidInput{},
			reason:    []string{"GovCloud shard", "DATABRICKS_GOVCLOUD_SHARD"},
		},
		{
			name:        "STORAGE reusing the key for volumes is accepted with the vendor's EBS statement for the workspace's role",
			policy:      policy(adminStatement, vendorDBFS, vendorEBS),
			useCases:    storage,
			volumeRoles: []string{crossAccountRole},
		},
		{
			name:        "STORAGE reusing the key for volumes without the EBS statement is rejected naming the role, the actions and the statement",
			policy:      policy(adminStatement, vendorDBFS, vendorGrants),
			useCases:    storage,
			volumeRoles: []string{crossAccountRole},
			want:        &taskerr.KeyPolicyRejected{},
			reason: []string{
				"lacks the EBS statement",
				"(" + crossAccountRole + ") kms:Decrypt, kms:GenerateDataKey*, kms:CreateGrant, kms:DescribeKey via EC2 (kms:ViaService = ec2.us-west-2.amazonaws.com)",
				`"Principal":{"AWS":"` + crossAccountRole + `"}`,
			},
		},
		{
			name:        "an EBS statement for another role does not count",
			policy:      policy(adminStatement, vendorDBFS, vendorEBS),
			useCases:    storage,
			volumeRoles: []string{"arn:aws:iam::111122223333:role/other-workspace-role"},
			want:        &taskerr.KeyPolicyRejected{},
			reason:      []string{"(arn:aws:iam::111122223333:role/other-workspace-role) kms:Decrypt"},
		},
		{
			name:        "an EBS statement without kms:CreateGrant is rejected naming kms:CreateGrant only",
			policy:      policy(adminStatement, vendorDBFS, allow("ebs", `{"AWS":"`+crossAccountRole+`"}`, `["kms:Decrypt","kms:GenerateDataKey*","kms:DescribeKey"]`, `{"ForAnyValue:StringLike":{"kms:ViaService":"ec2.*.amazonaws.com"}}`)),
			useCases:    storage,
			volumeRoles: []string{crossAccountRole},
			want:        &taskerr.KeyPolicyRejected{},
			reason:      []string{") kms:CreateGrant via EC2"},
		},
		{
			name:        "an EBS statement limited to another service does not count",
			policy:      policy(adminStatement, vendorDBFS, allow("ebs", `{"AWS":"`+crossAccountRole+`"}`, `["kms:Decrypt","kms:GenerateDataKey*","kms:CreateGrant","kms:DescribeKey"]`, `{"StringEquals":{"kms:ViaService":"s3.us-west-2.amazonaws.com"}}`)),
			useCases:    storage,
			volumeRoles: []string{crossAccountRole},
			want:        &taskerr.KeyPolicyRejected{},
			reason:      []string{"lacks the EBS statement"},
		},
		{
			name:        "an EBS statement for EC2 in another region does not count",
			policy:      policy(adminStatement, vendorDBFS, allow("ebs", `{"AWS":"`+crossAccountRole+`"}`, `["kms:Decrypt","kms:GenerateDataKey*","kms:CreateGrant","kms:DescribeKey"]`, `{"StringEquals":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}`)),
			useCases:    storage,
			volumeRoles: []string{crossAccountRole},
			want:        &taskerr.KeyPolicyRejected{},
			reason:      []string{"ec2.us-west-2.amazonaws.com"},
		},
		{
			name:        "an EBS statement naming EC2 of the key's region exactly is accepted",
			policy:      policy(adminStatement, vendorDBFS, allow("ebs", `{"AWS":"`+crossAccountRole+`"}`, `["kms:Decrypt","kms:GenerateDataKey*","kms:CreateGrant","kms:DescribeKey"]`, `{"StringEquals":{"kms:ViaService":"ec2.us-west-2.amazonaws.com"}}`)),
			useCases:    storage,
			volumeRoles: []string{crossAccountRole},
		},
		{
			name:        "a Deny of kms:CreateGrant to the role is rejected naming the statement",
			policy:      policy(adminStatement, vendorDBFS, vendorEBS, `{"Sid":"nogrants","Effect":"Deny","Principal":{"AWS":"`+crossAccountRole+`"},"Action":"kms:CreateGrant","Resource":"*"}`),
			useCases:    storage,
			volumeRoles: []string{crossAccountRole},
			want:        &taskerr.KeyPolicyRejected{},
			reason:      []string{`"nogrants" denies the workspace cross-account role`},
		},
		{
			name:     "principal * is too broad to count as a grant to Databricks",
			policy:   policy(allow("any", `"*"`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"does not allow the Databricks control plane (arn:aws:iam::414351767826:root) kms:Encrypt, kms:Decrypt"},
		},
		{
			name:     "principal AWS * is too broad as well",
			policy:   policy(allow("any", `{"AWS":"*"}`, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(accountID))),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
		},
		{
			name:     "a grant without the account condition is rejected as a confused deputy naming the parameter",
			policy:   policy(adminStatement, allow("Databricks MS", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`, "")),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason: []string{
				`without the condition aws:PrincipalTag/DatabricksAccountId = ` + accountID + ` (statement "Databricks MS")`,
				"confused deputy",
				`"StringEquals": {"aws:PrincipalTag/DatabricksAccountId": ["` + accountID + `"]}`,
				"set ALLOW_POLICY_WITHOUT_ACCOUNT_CONDITION=true to accept the risk",
			},
		},
		{
			name:         "a grant without the account condition is accepted when AllowMissingAccountCondition is set",
			policy:       policy(adminStatement, allow("Databricks MS", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`, "")),
			useCases:     managed,
			allowMissing: true,
		},
		{
			name: "an unscoped kms:* grant beside a scoped one is still a confused deputy",
			policy: policy(
				vendorManagedServices,
				allow("legacy", databricksAWS, `"kms:*"`, ""),
			),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{`(statement "legacy")`, "confused deputy"},
		},
		{
			name: "a condition on another key only does not scope the grant",
			policy: policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`,
				`{"StringEquals":{"kms:CallerAccount":"414351767826"}}`)),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"confused deputy"},
		},
		{
			name: "an IfExists condition does not scope the grant: it passes when the tag is absent",
			policy: policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`,
				`{"StringEqualsIfExists":{"aws:PrincipalTag/DatabricksAccountId":"`+accountID+`"}}`)),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"confused deputy"},
		},
		{
			name:     "a condition naming only another Databricks account does not count and the reason names it",
			policy:   policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(otherID))),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason: []string{
				"kms:Encrypt, kms:Decrypt",
				`(statement "ms" grants them only to Databricks account(s) ` + otherID + `, not ` + accountID + `)`,
			},
		},
		{
			name:     "a condition naming several accounts including ours counts",
			policy:   policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(otherID, accountID))),
			useCases: managed,
		},
		{
			name:         "a condition naming another account is not rescued by AllowMissingAccountCondition",
			policy:       policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`, scopedTo(otherID))),
			useCases:     managed,
			allowMissing: true,
			want:         &taskerr.KeyPolicyRejected{},
		},
		{
			name: "StringEqualsIgnoreCase, a lower-case condition key and an upper-case account id count",
			policy: policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`,
				`{"StringEqualsIgnoreCase":{"aws:principaltag/databricksaccountid":"`+strings.ToUpper(accountID)+`"}}`)),
			useCases: managed,
		},
		{
			name: "StringLike with a wildcard matching our account counts",
			policy: policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`,
				`{"StringLike":{"aws:PrincipalTag/DatabricksAccountId":"`+accountID[:8]+`-*"}}`)),
			useCases: managed,
		},
		{
			name: "ForAnyValue:StringEquals counts",
			policy: policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`,
				`{"ForAnyValue:StringEquals":{"aws:PrincipalTag/DatabricksAccountId":["`+accountID+`"]}}`)),
			useCases: managed,
		},
		{
			name: "ForAllValues:StringLike counts",
			policy: policy(allow("ms", databricksAWS, `["kms:Encrypt","kms:Decrypt"]`,
				`{"ForAllValues:StringLike":{"aws:PrincipalTag/DatabricksAccountId":["`+accountID+`"]}}`)),
			useCases: managed,
		},
		{
			name: "an unconditional Deny of kms:Decrypt to Databricks rejects the policy",
			policy: policy(vendorManagedServices,
				`{"Sid":"NoDecrypt","Effect":"Deny","Principal":{"AWS":"414351767826"},"Action":"kms:Decrypt","Resource":"*"}`),
			useCases:     managed,
			want:         &taskerr.KeyPolicyRejected{},
			reasonPrefix: `key policy statement "NoDecrypt" denies the Databricks control plane (arn:aws:iam::414351767826:root) kms:Decrypt with no condition`,
		},
		{
			name: "an unconditional Deny of kms:* to everyone rejects the policy",
			policy: policy(vendorManagedServices,
				`{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}`),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"key policy statement #2 denies", "kms:Encrypt, kms:Decrypt"},
		},
		{
			name: "a Deny with NotPrincipal that does not exempt Databricks rejects the policy",
			policy: policy(vendorManagedServices,
				`{"Sid":"OnlyUs","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{`statement "OnlyUs" denies`},
		},
		{
			name: "a conditional Deny does not reject the policy",
			policy: policy(vendorManagedServices,
				`{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}`),
			useCases: managed,
		},
		{
			name: "a Deny of actions Databricks does not need does not reject the policy",
			policy: policy(vendorManagedServices,
				`{"Effect":"Deny","Principal":"*","Action":["kms:ScheduleKeyDeletion","kms:Disable*"],"Resource":"*"}`),
			useCases: managed,
		},
		{
			name: "a Deny with NotAction covering the needed actions does not reject the policy",
			policy: policy(vendorManagedServices,
				`{"Effect":"Deny","Principal":"*","NotAction":["kms:Encrypt","kms:Decrypt","kms:Describe*"],"Resource":"*"}`),
			useCases: managed,
		},
		{
			name: "NotAction statements do not count as grants",
			policy: policy(`{"Sid":"everything-but","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"NotAction":"kms:ScheduleKeyDeletion","Resource":"*",` +
				`"Condition":` + scopedTo(accountID) + `}`),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"kms:Encrypt, kms:Decrypt"},
		},
		{
			name:     "kms:ReEncryptFrom and kms:ReEncryptTo count for kms:ReEncrypt*",
			policy:   policy(allow("st", databricksAWS, `["kms:Encrypt","kms:Decrypt","kms:ReEncryptFrom","kms:ReEncryptTo","kms:GenerateDataKey*","kms:DescribeKey"]`, scopedTo(accountID))),
			useCases: storage,
		},
		{
			name:     "kms:GenerateDataKey alone does not cover kms:GenerateDataKey*",
			policy:   policy(allow("st", databricksAWS, `["kms:Encrypt","kms:Decrypt","kms:ReEncrypt*","kms:GenerateDataKey","kms:DescribeKey"]`, scopedTo(accountID))),
			useCases: storage,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{"kms:GenerateDataKey* (kms:GenerateDataKeyWithoutPlaintext is not granted)"},
		},
		{
			name:     "action names match case-insensitively and with ? wildcards",
			policy:   policy(allow("ms", databricksAWS, `["KMS:encrypt","kms:D?crypt"]`, scopedTo(accountID))),
			useCases: managed,
		},
		{
			name:     "a single statement object instead of a list parses",
			policy:   `{"Version":"2012-10-17","Statement":` + vendorManagedServices + `}`,
			useCases: managed,
		},
		{
			name: "a Resource naming the key ARN counts when the key ARN is known",
			policy: policy(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:Encrypt","kms:Decrypt"],` +
				`"Resource":"` + keyARN + `","Condition":` + scopedTo(accountID) + `}`),
			useCases: managed,
			keyARN:   keyARN,
		},
		{
			name: "a Resource naming another key does not count",
			policy: policy(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::414351767826:root"},"Action":["kms:Encrypt","kms:Decrypt"],` +
				`"Resource":"arn:aws:kms:us-west-2:111122223333:key/other","Condition":` + scopedTo(accountID) + `}`),
			useCases: managed,
			keyARN:   keyARN,
			want:     &taskerr.KeyPolicyRejected{},
		},
		{
			name:         "malformed JSON is rejected as not valid JSON",
			policy:       `{"Version":"2012-10-17","Statement":[`,
			useCases:     managed,
			want:         &taskerr.KeyPolicyRejected{},
			reasonPrefix: "key policy is not valid JSON: ",
		},
		{
			name:         "a JSON array is not a policy document",
			policy:       `[]`,
			useCases:     managed,
			want:         &taskerr.KeyPolicyRejected{},
			reasonPrefix: "key policy is not a JSON object",
		},
		{
			name:         "a policy without statements is rejected",
			policy:       `{"Version":"2012-10-17"}`,
			useCases:     managed,
			want:         &taskerr.KeyPolicyRejected{},
			reasonPrefix: "key policy has no Statement",
		},
		{
			name:     "an object as Action is rejected naming the statement",
			policy:   policy(allow("odd", databricksAWS, `{"a":1}`, "")),
			useCases: managed,
			want:     &taskerr.KeyPolicyRejected{},
			reason:   []string{`statement "odd" has an invalid Action`},
		},
		{
			name:      "an unknown partition is invalid input",
			policy:    policy(vendorManagedServices),
			partition: "aws-cn",
			useCases:  managed,
			want:      &taskerr.InvalidInput{},
			reason:    []string{`partition "aws-cn" has no Databricks control plane`},
		},
		{
			name:     "an unknown use case is invalid input",
			policy:   policy(vendorManagedServices),
			useCases: []string{"EBS"},
			want:     &taskerr.InvalidInput{},
			reason:   []string{`use case "EBS"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := keypolicy.Requirement{
				DatabricksAccountID:          accountID,
				Partition:                    "aws",
				UseCases:                     tt.useCases,
				AllowMissingAccountCondition: tt.allowMissing,
				KeyARN:                       tt.keyARN,
				GovCloudShard:                tt.shard,
				VolumeRoleARNs:               tt.volumeRoles,
				Region:                       "us-west-2",
			}
			if tt.partition != "" {
				req.Partition = tt.partition
			}
			err := keypolicy.Check(tt.policy, req)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, taskerr.Name(tt.want), taskerr.Name(err), "error type, reason: %s", err)
			for _, s := range tt.reason {
				assert.Contains(t, err.Error(), s)
			}
			if tt.reasonPrefix != "" {
				assert.True(t, strings.HasPrefix(err.Error(), tt.reasonPrefix), "reason %q\nwant prefix %q", err.Error(), tt.reasonPrefix)
			}
		})
	}
}

func TestCheckRejectionsAreTypedForErrorsAs(t *testing.T) {
	err := keypolicy.Check(policy(adminStatement), keypolicy.Requirement{DatabricksAccountID: accountID, Partition: "aws"})
	var rejected *taskerr.KeyPolicyRejected
	require.True(t, errors.As(err, &rejected))
	assert.NotEmpty(t, rejected.Reason)
}

func TestCheckWithoutAccountIDIsInvalidInput(t *testing.T) {
	err := keypolicy.Check(policy(vendorManagedServices), keypolicy.Requirement{Partition: "aws"})
	var invalid *taskerr.InvalidInput
	require.ErrorAs(t, err, &invalid)
	assert.Contains(t, invalid.Reason, "Databricks account id is empty")
}

func TestRequiredActions(t *testing.T) {
	got, err := keypolicy.RequiredActions(both)
	require.NoError(t, err)
	assert.Equal(t, []string{"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"}, got)
	got, err = keypolicy.RequiredActions(nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"kms:Encrypt", "kms:Decrypt"}, got)
}

func TestShardOfAccountHost(t *testing.T) {
	for host, want := range map[string]string{
		"https://accounts.cloud.databricks.us":       keypolicy.ShardCivilian,
		"https://accounts-dod.cloud.databricks.mil/": keypolicy.ShardDoD,
		"https://accounts.cloud.databricks.com":      "",
		"http://127.0.0.1:8080":                      "",
	} {
		assert.Equal(t, want, keypolicy.ShardOfAccountHost(host), host)
	}
}
