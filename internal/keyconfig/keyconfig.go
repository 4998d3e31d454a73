// Package keyconfig registers the new key with Databricks as a key configuration, exactly once.
package keyconfig

import (
	"context"
	"fmt"

	"github.com/databricks/databricks-sdk-go/service/provisioning"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/validate"
)

// Account is the part of the account API registration needs.
type Account interface {
	ListKeyConfigs(ctx context.Context) ([]provisioning.CustomerManagedKey, error)
	CreateKeyConfig(ctx context.Context, req provisioning.CreateCustomerManagedKeyRequest) (*provisioning.CustomerManagedKey, error)
}

// Input is the part of the execution state the task reads.
type Input struct {
	Plan rotation.Plan `json:"plan"`
}

// Task finds or creates the key configuration for the plan's key and use cases.
type Task struct {
	Account Account
}

// Handle returns the id of the key configuration to attach. It lists before it creates, so a retry
// after a create whose response was lost finds the configuration instead of making a second one.
func (t *Task) Handle(ctx context.Context, in Input) (rotation.KeyConfig, error) {
	p := in.Plan
	configs, err := t.Account.ListKeyConfigs(ctx)
	if err != nil {
		return rotation.KeyConfig{}, fmt.Errorf("listing key configurations: %w", err)
	}
	// A rollback names the configuration to move back to (Validate checked it names this key): it is
	// reused even when its use cases are wider than the plan's, so no second configuration appears.
	if p.RollbackKeyConfigID != "" {
		for _, c := range configs {
			if c.CustomerManagedKeyId == p.RollbackKeyConfigID && c.AwsKeyInfo != nil && c.AwsKeyInfo.KeyArn == p.KeyARN {
				return rotation.KeyConfig{KeyConfigID: c.CustomerManagedKeyId}, nil
			}
		}
	}
	if existing := validate.MatchingKeyConfig(configs, p.KeyARN, p.UseCases, p.ReuseKeyForClusterVolumes); existing != nil {
		return rotation.KeyConfig{KeyConfigID: existing.CustomerManagedKeyId}, nil
	}
	info := &provisioning.CreateAwsKeyInfo{KeyArn: p.KeyARN, KeyAlias: p.KeyAlias, KeyRegion: p.KeyRegion}
	if rotation.HasUseCase(p.UseCases, rotation.UseCaseStorage) {
		info.ReuseKeyForClusterVolumes = p.ReuseKeyForClusterVolumes
		// false is Go's zero value and would be dropped; Databricks would then default it to true.
		info.ForceSendFields = []string{"ReuseKeyForClusterVolumes"}
	}
	req := provisioning.CreateCustomerManagedKeyRequest{AwsKeyInfo: info}
	for _, uc := range p.UseCases {
		req.UseCases = append(req.UseCases, provisioning.KeyUseCase(uc))
	}
	created, err := t.Account.CreateKeyConfig(ctx, req)
	if err != nil {
		return rotation.KeyConfig{}, fmt.Errorf("registering key %s as a key configuration: %w", p.KeyARN, err)
	}
	return rotation.KeyConfig{KeyConfigID: created.CustomerManagedKeyId, Created: true}, nil
}
