package rig

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/databricks/databricks-sdk-go/service/sql"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
)

// Workspaces of the sandbox's Databricks account. The first two are the ones the KMS events in
// events/kms name in their tags.
const (
	AnalyticsWorkspace = int64(1234567890123456) // managed services key only: the one the demo rotates
	MLWorkspace        = int64(2345678901234567) // managed services and storage keys
	EuropeWorkspace    = int64(3456789012345678) // in eu-west-1, for the region check
	OldKeyConfigID     = "0c6f4a55-0000-4000-8000-0000000000a1"
)

// Keys of the KMS events in events/kms, seeded into local-kms with those ids.
const (
	EventKeyID       = "1234abcd-12ab-34cd-56ef-1234567890ab" // CreateKey, TagResource, CreateAlias, rotations
	AliasTargetKeyID = "0987dcba-09fe-87dc-65ba-ab0987654321" // UpdateAlias
	UntaggedKeyID    = "5f8e2c1a-3b4d-4e6f-8a9b-0c1d2e3f4a5b"
	TwoWorkspaceKey  = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	OldKeyID         = "00000000-aaaa-4bbb-8ccc-000000000001" // what the workspaces use before a rotation
)

// KeyARN is the ARN of a key id in the sandbox's account and region.
func (r *Rig) KeyARN(keyID string) string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", r.Region, AWSAccount, keyID)
}

var fixtureKeysSeed = `Keys:
  Symmetric:
    Aes:
` + seedKey(EventKeyID, "1f9e8d7c6b5a49382716050403020100ffeeddccbbaa99887766554433221100") +
	seedKey(AliasTargetKeyID, "2f9e8d7c6b5a49382716050403020100ffeeddccbbaa99887766554433221100") +
	seedKey(UntaggedKeyID, "3f9e8d7c6b5a49382716050403020100ffeeddccbbaa99887766554433221100") +
	seedKey(TwoWorkspaceKey, "4f9e8d7c6b5a49382716050403020100ffeeddccbbaa99887766554433221100") +
	seedKey(OldKeyID, "5f9e8d7c6b5a49382716050403020100ffeeddccbbaa99887766554433221100")

func seedKey(id, material string) string {
	return fmt.Sprintf("      - Metadata:\n          KeyId: %s\n        BackingKeys:\n          - %s\n", id, material)
}

// DatabricksKeyPolicy is a key policy as the Databricks documentation asks for it: the account's
// own admin statement and the Databricks control plane allowed to use the key for managed services
// and workspace storage, restricted to our Databricks account id.
func DatabricksKeyPolicy(databricksAccountID string) string {
	return policy([]map[string]any{
		adminStatement(),
		{"Sid": "Allow Databricks to use KMS key for managed services in the control plane", "Effect": "Allow",
			"Principal": map[string]any{"AWS": "arn:aws:iam::414351767826:root"},
			"Action":    []string{"kms:Encrypt", "kms:Decrypt"}, "Resource": "*",
			"Condition": map[string]any{"StringEquals": map[string]any{"aws:PrincipalTag/DatabricksAccountId": []string{databricksAccountID}}}},
		{"Sid": "Allow Databricks to use KMS key for DBFS", "Effect": "Allow",
			"Principal": map[string]any{"AWS": "arn:aws:iam::414351767826:root"},
			"Action":    []string{"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"}, "Resource": "*",
			"Condition": map[string]any{"StringEquals": map[string]any{"aws:PrincipalTag/DatabricksAccountId": []string{databricksAccountID}}}},
	})
}

// AdminOnlyKeyPolicy lets nobody but the AWS account in: Databricks cannot use such a key.
func AdminOnlyKeyPolicy() string { return policy([]map[string]any{adminStatement()}) }

func adminStatement() map[string]any {
	return map[string]any{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
		"Principal": map[string]any{"AWS": "arn:aws:iam::" + AWSAccount + ":root"}, "Action": "kms:*", "Resource": "*"}
}

func policy(statements []map[string]any) string {
	doc, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": statements})
	return string(doc)
}

// PrepareFixtureKeys gives the seeded event keys the policy and tags that the events in events/kms
// assume, so that an event file can be delivered to the trigger as it is.
func (r *Rig) PrepareFixtureKeys(ctx context.Context) error {
	good := DatabricksKeyPolicy(DatabricksAccountID)
	keys := []struct {
		id   string
		tags map[string]string
	}{
		{EventKeyID, map[string]string{"databricks:workspace": "1234567890123456"}},
		{AliasTargetKeyID, map[string]string{"databricks:workspace": "1234567890123456"}},
		{UntaggedKeyID, nil},
		{TwoWorkspaceKey, map[string]string{"databricks:workspace": "2345678901234567 1234567890123456", "databricks:use-cases": "MANAGED_SERVICES STORAGE", "databricks:dry-run": "true"}},
		{OldKeyID, nil},
	}
	for _, k := range keys {
		if _, err := r.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(k.id), PolicyName: aws.String("default"), Policy: aws.String(good)}); err != nil {
			return fmt.Errorf("setting the policy of fixture key %s: %w", k.id, err)
		}
		if len(k.tags) > 0 {
			if _, err := r.KMS.TagResource(ctx, &kms.TagResourceInput{KeyId: aws.String(k.id), Tags: kmsTags(k.tags)}); err != nil {
				return fmt.Errorf("tagging fixture key %s: %w", k.id, err)
			}
		}
	}
	return nil
}

func kmsTags(tags map[string]string) []kmstypes.Tag {
	var out []kmstypes.Tag
	for k, v := range tags {
		out = append(out, kmstypes.Tag{TagKey: aws.String(k), TagValue: aws.String(v)})
	}
	return out
}

// NewKey creates a symmetric key in local KMS with a policy and tags, as an operator would.
func (r *Rig) NewKey(ctx context.Context, description, policy string, tags map[string]string) (*kmstypes.KeyMetadata, error) {
	out, err := r.KMS.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(description), Policy: aws.String(policy), Tags: kmsTags(tags),
		KeySpec: kmstypes.KeySpecSymmetricDefault, KeyUsage: kmstypes.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		return nil, fmt.Errorf("creating a key in local KMS: %w", err)
	}
	return out.KeyMetadata, nil
}

// DemoSeed is the Databricks account of the sandbox: three workspaces, the first with a realistic
// mix of running compute, all on an old key configuration.
func DemoSeed(region string) dbfake.SeedFile {
	oldKey := provisioning.CustomerManagedKey{CustomerManagedKeyId: OldKeyConfigID, AccountId: DatabricksAccountID,
		UseCases: []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices, provisioning.KeyUseCaseStorage},
		AwsKeyInfo: &provisioning.AwsKeyInfo{KeyArn: fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", region, AWSAccount, OldKeyID),
			KeyAlias: "alias/databricks/previous", KeyRegion: region, ReuseKeyForClusterVolumes: true}}
	workspace := func(id int64, name, wsRegion, storageKey string) provisioning.Workspace {
		return provisioning.Workspace{WorkspaceId: id, WorkspaceName: name, DeploymentName: "dbc-" + name, AwsRegion: wsRegion,
			WorkspaceStatus: provisioning.WorkspaceStatusRunning, PricingTier: provisioning.PricingTierEnterprise,
			ManagedServicesCustomerManagedKeyId: OldKeyConfigID, StorageCustomerManagedKeyId: storageKey}
	}
	europe := workspace(EuropeWorkspace, "eu-analytics", "eu-west-1", "")
	europe.ManagedServicesCustomerManagedKeyId = ""
	return dbfake.SeedFile{
		KeyConfigs: []provisioning.CustomerManagedKey{oldKey},
		Workspaces: []dbfake.WorkspaceSeed{
			{
				Workspace: workspace(AnalyticsWorkspace, "analytics-prod", region, ""),
				Clusters: []compute.ClusterDetails{
					{ClusterId: "0101-etl-interactive", ClusterName: "etl-interactive", State: compute.StateRunning, ClusterSource: compute.ClusterSourceUi, InstancePoolId: "pool-general"},
					{ClusterId: "0102-data-science", ClusterName: "data-science", State: compute.StateRunning, ClusterSource: compute.ClusterSourceUi},
					{ClusterId: "0103-api-automation", ClusterName: "api-automation", State: compute.StateRunning, ClusterSource: compute.ClusterSourceApi},
					{ClusterId: "0104-nightly-job", ClusterName: "job-812-run-77", State: compute.StateRunning, ClusterSource: compute.ClusterSourceJob},
					{ClusterId: "0105-archived", ClusterName: "archived", State: compute.StateTerminated, ClusterSource: compute.ClusterSourceUi},
				},
				Pools: []compute.InstancePoolAndStats{
					{InstancePoolId: "pool-general", InstancePoolName: "general-purpose", NodeTypeId: "i3.xlarge", MinIdleInstances: 2,
						IdleInstanceAutoterminationMinutes: 30, MaxCapacity: 20, CustomTags: map[string]string{"team": "platform"}},
				},
				Warehouses: []sql.EndpointInfo{
					{Id: "wh-bi-classic", Name: "bi-classic", State: sql.StateRunning, WarehouseType: sql.EndpointInfoWarehouseTypeClassic, ClusterSize: "Small"},
					{Id: "wh-serverless", Name: "serverless-adhoc", State: sql.StateRunning, EnableServerlessCompute: true, WarehouseType: sql.EndpointInfoWarehouseTypePro},
				},
				Pipelines: []dbfake.PipelineSeed{
					{PipelineID: "pl-orders-stream", Name: "orders-stream", State: pipelines.PipelineStateRunning, Continuous: true},
				},
			},
			{
				Workspace: workspace(MLWorkspace, "ml-prod", region, OldKeyConfigID),
				Clusters: []compute.ClusterDetails{
					{ClusterId: "0201-training", ClusterName: "training", State: compute.StateRunning, ClusterSource: compute.ClusterSourceUi},
				},
			},
			{Workspace: europe},
		},
	}
}

// PolicyAllowing is a rotation policy (Options.Policy) that lets the demo's workspaces and the given
// extra ones rotate automatically, as the bundled example policy does for the demo's.
func PolicyAllowing(extraWorkspaceIDs ...string) string {
	ids := append([]string{"1234567890123456", "2345678901234567", "3456789012345678"}, extraWorkspaceIDs...)
	return fmt.Sprintf(`version: 1
rules:
  - name: sandbox
    workspaces: ["%s"]
    key_accounts: ["%s"]
    principals: ["arn:aws:iam::%s:user/Alice", "arn:aws:iam::%s:user/platform-admin"]
    use_cases: [MANAGED_SERVICES, STORAGE]
    mode: automatic
`, strings.Join(ids, `", "`), AWSAccount, AWSAccount, AWSAccount)
}
