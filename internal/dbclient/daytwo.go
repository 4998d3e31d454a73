package dbclient

import (
	"context"

	"github.com/databricks/databricks-sdk-go/service/provisioning"
)

// ListWorkspaces lists every workspace of the account (one page: the API does not paginate).
func (a *Account) ListWorkspaces(ctx context.Context) ([]provisioning.Workspace, error) {
	return a.Workspaces.List(ctx)
}

// DeleteKeyConfig deletes a key configuration. Databricks refuses to delete one a running workspace
// uses, but the caller must not rely on that: it checks first.
func (a *Account) DeleteKeyConfig(ctx context.Context, id string) error {
	_, err := a.EncryptionKeys.DeleteByCustomerManagedKeyId(ctx, id)
	return err
}
