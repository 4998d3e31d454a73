// Package validate implements the first task of the rotation: check everything, touch nothing.
//
// Order matters for the operator reading a rejection: the input itself, then each workspace (exists,
// RUNNING, in the key's region), then the key (usable, policy lets Databricks in), then the storage
// rule. Nothing here writes to Databricks or KMS; the key policy it accepts is kept as a snapshot
// (internal/policysnap) for the key guard's undo of a PutKeyPolicy.
package validate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/provisioning"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policysnap"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// KeyChecker checks that a KMS key is usable and that its policy lets Databricks in.
type KeyChecker interface {
	Check(ctx context.Context, keyARN string, req keypolicy.Requirement) (kmscheck.Key, error)
}

// Account is the part of the Databricks account API validation reads.
type Account interface {
	GetWorkspace(ctx context.Context, id int64) (*provisioning.Workspace, error)
	ListKeyConfigs(ctx context.Context) ([]provisioning.CustomerManagedKey, error)
	GetCredential(ctx context.Context, id string) (*provisioning.Credential, error)
}

// Settings are the deployment's choices that shape a plan.
type Settings struct {
	DatabricksAccountID string
	// AllowMissingAccountCondition accepts a key policy that grants the Databricks principal without
	// the aws:PrincipalTag/DatabricksAccountId condition (a confused-deputy risk; off by default).
	AllowMissingAccountCondition bool
	// GovCloudShard is keypolicy.ShardCivilian or keypolicy.ShardDoD for a GovCloud account.
	GovCloudShard      string
	QuietWindowSeconds int
	MaxConcurrency     int
}

// Task validates an execution input and returns the plan.
type Task struct {
	Keys     KeyChecker
	Account  Account
	Settings Settings
	// Snapshots keeps the key policy a validation accepted (nil: none kept). A failed save is
	// logged, not returned: the snapshot serves the key guard's optional undo, and a rotation must not
	// wait on it.
	Snapshots PolicySaver
	Log       *slog.Logger
	Now       func() time.Time
}

// PolicySaver stores the key policy a validation accepted.
type PolicySaver interface {
	Save(ctx context.Context, snap policysnap.Snapshot) error
}

var _ PolicySaver = (*policysnap.Store)(nil)

// Input is the task input: the execution input exactly as the operator or the trigger wrote it
// ($$.Execution.Input), whatever other tasks have added to the state since.
type Input struct {
	Request json.RawMessage `json:"request"`
}

// Handle is the Lambda entry point: the execution input in, the plan out.
func (t *Task) Handle(ctx context.Context, in Input) (rotation.Plan, error) {
	req, err := rotation.ParseRequest(in.Request)
	if err != nil {
		return rotation.Plan{}, err
	}
	return t.Validate(ctx, req)
}

// Validate checks a parsed request against Databricks and KMS.
func (t *Task) Validate(ctx context.Context, req rotation.Request) (rotation.Plan, error) {
	arn, err := kmscheck.ParseKeyARN(req.KeyARN)
	if err != nil {
		return rotation.Plan{}, err
	}

	workspaces := make([]*provisioning.Workspace, 0, len(req.WorkspaceIDs))
	for _, id := range req.WorkspaceIDs {
		ws, err := t.workspace(ctx, id)
		if err != nil {
			return rotation.Plan{}, err
		}
		if ws.AwsRegion != "" && ws.AwsRegion != arn.Region {
			return rotation.Plan{}, taskerr.Errorf[taskerr.KeyRegionMismatch](
				"key %s is in %s but workspace %s (%s) is in %s: Databricks requires the key in the workspace's region",
				req.KeyARN, arn.Region, id, ws.WorkspaceName, ws.AwsRegion)
		}
		workspaces = append(workspaces, ws)
	}

	volumeRoles, err := t.volumeRoles(ctx, req, workspaces)
	if err != nil {
		return rotation.Plan{}, err
	}
	key, err := t.Keys.Check(ctx, req.KeyARN, keypolicy.Requirement{
		DatabricksAccountID:          t.Settings.DatabricksAccountID,
		Partition:                    arn.Partition,
		UseCases:                     req.UseCases,
		AllowMissingAccountCondition: t.Settings.AllowMissingAccountCondition,
		GovCloudShard:                t.Settings.GovCloudShard,
		VolumeRoleARNs:               volumeRoles,
		Region:                       arn.Region,
	})
	if err != nil {
		return rotation.Plan{}, err
	}
	t.snapshot(ctx, key)

	configs, err := t.Account.ListKeyConfigs(ctx)
	if err != nil {
		return rotation.Plan{}, fmt.Errorf("listing key configurations: %w", err)
	}
	keyARNOf := map[string]string{}
	for _, c := range configs {
		if c.AwsKeyInfo != nil {
			keyARNOf[c.CustomerManagedKeyId] = c.AwsKeyInfo.KeyArn
		}
	}

	plan := rotation.Plan{
		KeyARN:                    key.ARN,
		KeyAlias:                  firstNonEmpty(req.KeyAlias, key.AliasName),
		KeyRegion:                 key.Region,
		UseCases:                  req.UseCases,
		ReuseKeyForClusterVolumes: req.ReuseKeyForVolumes(),
		DryRun:                    req.DryRun,
		QuietWindowSeconds:        t.Settings.QuietWindowSeconds,
		MaxConcurrency:            max(1, t.Settings.MaxConcurrency),
	}
	if existing := MatchingKeyConfig(configs, key.ARN, req.UseCases, plan.ReuseKeyForClusterVolumes); existing != nil {
		plan.ExistingKeyConfigID = existing.CustomerManagedKeyId
	}
	if req.RollbackOf != nil {
		previous, err := checkRollback(req, key.ARN, workspaces, configs)
		if err != nil {
			return rotation.Plan{}, err
		}
		plan.ExistingKeyConfigID, plan.RollbackKeyConfigID = previous, previous
	}

	wantsStorage := rotation.HasUseCase(req.UseCases, rotation.UseCaseStorage)
	wantsManaged := rotation.HasUseCase(req.UseCases, rotation.UseCaseManagedServices)
	for _, ws := range workspaces {
		target := rotation.WorkspaceTarget{
			WorkspaceID:           strconv.FormatInt(ws.WorkspaceId, 10),
			WorkspaceName:         ws.WorkspaceName,
			DeploymentName:        ws.DeploymentName,
			Region:                firstNonEmpty(ws.AwsRegion, key.Region),
			PreviousManagedKeyID:  ws.ManagedServicesCustomerManagedKeyId,
			PreviousManagedKeyARN: keyARNOf[ws.ManagedServicesCustomerManagedKeyId],
			PreviousStorageKeyID:  ws.StorageCustomerManagedKeyId,
		}
		storageKeyARN := keyARNOf[ws.StorageCustomerManagedKeyId]
		if wantsStorage && ws.StorageCustomerManagedKeyId != "" && storageKeyARN != key.ARN {
			return rotation.Plan{}, taskerr.Errorf[taskerr.StorageKeyReplacementRefused](
				"workspace %s (%s) already encrypts its storage with key configuration %s (%s); Databricks cannot replace a storage key on a running workspace. "+
					"Rotate that key's material in KMS instead (the ARN stays the same, so Databricks needs nothing), or request use_cases [\"MANAGED_SERVICES\"] only",
				target.WorkspaceID, ws.WorkspaceName, ws.StorageCustomerManagedKeyId, orUnknown(storageKeyARN))
		}
		target.AddsStorageKey = wantsStorage && ws.StorageCustomerManagedKeyId == ""
		managedDone := !wantsManaged || (target.PreviousManagedKeyARN != "" && target.PreviousManagedKeyARN == key.ARN)
		storageDone := !wantsStorage || storageKeyARN == key.ARN
		target.AlreadyOnKey = managedDone && storageDone
		plan.Workspaces = append(plan.Workspaces, target)
	}
	return plan, nil
}

// checkRollback refuses a rollback that no longer applies and returns the key configuration to move
// back to. Each workspace must still be on the configuration the rolled-back rotation set: if it is
// not, a later rotation (or a hand change) happened since, and moving back would undo that one
// instead. The previous configuration is reused as it is: it is the very one the workspace used before.
func checkRollback(req rotation.Request, keyARN string, workspaces []*provisioning.Workspace, configs []provisioning.CustomerManagedKey) (string, error) {
	r := req.RollbackOf
	for _, ws := range workspaces {
		if ws.ManagedServicesCustomerManagedKeyId != r.KeyConfigID {
			return "", taskerr.Errorf[taskerr.RollbackRefused](
				"workspace %d (%s) is on managed services key configuration %s, not %s that execution %s set: a later rotation happened since; roll back that one instead",
				ws.WorkspaceId, ws.WorkspaceName, orUnknown(ws.ManagedServicesCustomerManagedKeyId), r.KeyConfigID, r.Execution)
		}
	}
	for _, c := range configs {
		if c.CustomerManagedKeyId != r.PreviousKeyConfigID {
			continue
		}
		if c.AwsKeyInfo == nil || c.AwsKeyInfo.KeyArn != keyARN {
			return "", taskerr.Errorf[taskerr.RollbackRefused](
				"previous key configuration %s is not for key %s: the rollback input does not match what execution %s replaced", r.PreviousKeyConfigID, keyARN, r.Execution)
		}
		if !slices.Contains(c.UseCases, provisioning.KeyUseCaseManagedServices) {
			return "", taskerr.Errorf[taskerr.RollbackRefused](
				"previous key configuration %s does not have the MANAGED_SERVICES use case", r.PreviousKeyConfigID)
		}
		return c.CustomerManagedKeyId, nil
	}
	return "", taskerr.Errorf[taskerr.RollbackRefused](
		"previous key configuration %s no longer exists in the account (deleted since execution %s?): nothing to roll back to", r.PreviousKeyConfigID, r.Execution)
}

// volumeRoles returns the cross-account roles that will encrypt cluster EBS volumes with the key:
// those of workspaces that gain a storage key reused for cluster volumes. The storage key can never
// be replaced afterwards, so a role the key policy forgets would break every later cluster launch
// for good; reading them here lets the key check refuse before anything stops. A workspace with no
// credential configuration has no classic data plane, hence no EBS volumes.
func (t *Task) volumeRoles(ctx context.Context, req rotation.Request, workspaces []*provisioning.Workspace) ([]string, error) {
	if !rotation.HasUseCase(req.UseCases, rotation.UseCaseStorage) || !req.ReuseKeyForVolumes() {
		return nil, nil
	}
	var roles []string
	for _, ws := range workspaces {
		if ws.StorageCustomerManagedKeyId != "" || ws.CredentialsId == "" {
			continue
		}
		cred, err := t.Account.GetCredential(ctx, ws.CredentialsId)
		switch {
		case errors.Is(err, apierr.ErrNotFound), errors.Is(err, apierr.ErrPermissionDenied):
			return nil, taskerr.Errorf[taskerr.InvalidInput]("workspace %d (%s): credential configuration %s cannot be read (%v), so the cross-account role that must be allowed to use the key for EBS volumes is unknown",
				ws.WorkspaceId, ws.WorkspaceName, ws.CredentialsId, err)
		case err != nil:
			return nil, fmt.Errorf("reading credential configuration %s of workspace %d: %w", ws.CredentialsId, ws.WorkspaceId, err)
		}
		if cred.AwsCredentials == nil || cred.AwsCredentials.StsRole == nil || cred.AwsCredentials.StsRole.RoleArn == "" {
			return nil, taskerr.Errorf[taskerr.InvalidInput]("workspace %d (%s): credential configuration %s names no cross-account role (aws_credentials.sts_role.role_arn), so the EBS statement of the key policy cannot be checked",
				ws.WorkspaceId, ws.WorkspaceName, ws.CredentialsId)
		}
		if role := cred.AwsCredentials.StsRole.RoleArn; !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	return roles, nil
}

func (t *Task) workspace(ctx context.Context, id string) (*provisioning.Workspace, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return nil, taskerr.Errorf[taskerr.InvalidInput]("workspace_ids: %q is not a workspace id", id)
	}
	ws, err := t.Account.GetWorkspace(ctx, n)
	switch {
	case errors.Is(err, apierr.ErrNotFound):
		return nil, taskerr.Errorf[taskerr.WorkspaceNotFound]("workspace %s does not exist in Databricks account %s", id, t.Settings.DatabricksAccountID)
	case errors.Is(err, apierr.ErrPermissionDenied):
		return nil, taskerr.Errorf[taskerr.WorkspaceNotFound]("workspace %s is not visible to the rotator's service principal (permission denied): it needs the account admin role", id)
	case err != nil:
		return nil, fmt.Errorf("reading workspace %s: %w", id, err)
	}
	if ws.WorkspaceStatus != provisioning.WorkspaceStatusRunning {
		return nil, taskerr.Errorf[taskerr.WorkspaceNotRunning]("workspace %s (%s) is %s, not RUNNING: %s",
			id, ws.WorkspaceName, ws.WorkspaceStatus, orUnknown(ws.WorkspaceStatusMessage))
	}
	return ws, nil
}

// MatchingKeyConfig finds a key configuration for exactly this key and these use cases, so that a
// rotation never registers a duplicate.
func MatchingKeyConfig(configs []provisioning.CustomerManagedKey, keyARN string, useCases []string, reuseForVolumes bool) *provisioning.CustomerManagedKey {
	for i := range configs {
		c := &configs[i]
		if c.AwsKeyInfo == nil || c.AwsKeyInfo.KeyArn != keyARN {
			continue
		}
		have := make([]string, 0, len(c.UseCases))
		for _, uc := range c.UseCases {
			have = append(have, string(uc))
		}
		slices.Sort(have)
		if !slices.Equal(have, useCases) {
			continue
		}
		if rotation.HasUseCase(useCases, rotation.UseCaseStorage) && c.AwsKeyInfo.ReuseKeyForClusterVolumes != reuseForVolumes {
			continue
		}
		return c
	}
	return nil
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// snapshot keeps the policy the check accepted: the last one known to let Databricks use the key.
func (t *Task) snapshot(ctx context.Context, key kmscheck.Key) {
	if t.Snapshots == nil || key.Policy == "" {
		return
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	if err := t.Snapshots.Save(ctx, policysnap.Snapshot{KeyARN: key.ARN, Policy: key.Policy, ValidatedAt: now().UTC()}); err != nil {
		log := t.Log
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		log.WarnContext(ctx, "key policy snapshot not stored; the key guard cannot restore this policy", "key_arn", key.ARN, "error", err.Error())
	}
}
