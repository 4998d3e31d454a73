package dbfake

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyConfigCreate(t *testing.T) {
	arn := keyARN("eu-west-1", "1234abcd-12ab-34cd-56ef-1234567890ab")
	tests := []struct {
		name      string
		req       provisioning.CreateCustomerManagedKeyRequest
		wantErr   error
		wantReuse bool
		wireReuse string // what the SDK put on the wire for reuse_key_for_cluster_volumes; "" = absent
	}{
		{
			name: "a storage key without reuse_key_for_cluster_volumes reuses the key for cluster volumes",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: arn},
				UseCases:   []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices, provisioning.KeyUseCaseStorage},
			},
			wantReuse: true,
		},
		{
			name: "a storage key with reuse false in ForceSendFields keeps false",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: arn, ForceSendFields: []string{"ReuseKeyForClusterVolumes"}},
				UseCases:   []provisioning.KeyUseCase{provisioning.KeyUseCaseStorage},
			},
			wantReuse: false,
			wireReuse: "false",
		},
		{
			name: "a storage key with reuse false but no ForceSendFields silently becomes true",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: arn, ReuseKeyForClusterVolumes: false},
				UseCases:   []provisioning.KeyUseCase{provisioning.KeyUseCaseStorage},
			},
			wantReuse: true,
		},
		{
			name: "a managed-services-only key does not reuse the key for cluster volumes",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: arn},
				UseCases:   []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices},
			},
			wantReuse: false,
		},
		{
			name: "empty use cases are refused",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: arn},
			},
			wantErr: apierr.ErrInvalidParameterValue,
		},
		{
			name: "an unknown use case is refused",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: arn},
				UseCases:   []provisioning.KeyUseCase{"DBFS"},
			},
			wantErr: apierr.ErrInvalidParameterValue,
		},
		{
			name: "an alias ARN instead of a key ARN is refused",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: "arn:aws:kms:eu-west-1:111122223333:alias/rotator"},
				UseCases:   []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices},
			},
			wantErr: apierr.ErrInvalidParameterValue,
		},
		{
			name: "a key region that contradicts the ARN is refused",
			req: provisioning.CreateCustomerManagedKeyRequest{
				AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: arn, KeyRegion: "us-east-1"},
				UseCases:   []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices},
			},
			wantErr: apierr.ErrInvalidParameterValue,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startFake(t, Options{})
			keys := provisioning.NewEncryptionKeys(accountClient(t, s))

			got, err := keys.Create(context.Background(), tt.req)
			if tt.wantErr != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tt.wantErr)
				assert.Empty(t, s.KeyConfigs())
				return
			}
			require.NoError(t, err)
			require.NotNil(t, got.AwsKeyInfo)
			assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, got.CustomerManagedKeyId)
			assert.Equal(t, testAccount, got.AccountId)
			assert.Equal(t, "eu-west-1", got.AwsKeyInfo.KeyRegion, "key_region is inferred from the ARN")
			assert.Equal(t, tt.wantReuse, got.AwsKeyInfo.ReuseKeyForClusterVolumes)
			assert.InDelta(t, time.Now().UnixMilli(), got.CreationTime, 60_000)

			var wire struct {
				AwsKeyInfo map[string]json.RawMessage `json:"aws_key_info"`
			}
			reqs := s.Requests()
			require.NoError(t, json.Unmarshal([]byte(reqs[len(reqs)-1].Body), &wire))
			assert.Equal(t, tt.wireReuse, string(wire.AwsKeyInfo["reuse_key_for_cluster_volumes"]))
		})
	}
}

func TestKeyConfigLifecycle(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{})
	seedRotation(t, s)
	keys := provisioning.NewEncryptionKeys(accountClient(t, s))

	created, err := keys.Create(ctx, provisioning.CreateCustomerManagedKeyRequest{
		AwsKeyInfo: &provisioning.CreateAwsKeyInfo{KeyArn: keyARN(testRegion, "mrk-0123456789abcdef0123456789abcdef"), KeyAlias: "alias/rotated"},
		UseCases:   []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices},
	})
	require.NoError(t, err)

	t.Run("list answers every key configuration in creation order", func(t *testing.T) {
		all, err := keys.List(ctx)
		require.NoError(t, err)
		ids := make([]string, 0, len(all))
		for _, k := range all {
			ids = append(ids, k.CustomerManagedKeyId)
		}
		assert.Equal(t, []string{oldManagedKey, newManagedKey, storageKey, otherStorage, created.CustomerManagedKeyId}, ids)
	})
	t.Run("get answers the key configuration", func(t *testing.T) {
		got, err := keys.GetByCustomerManagedKeyId(ctx, created.CustomerManagedKeyId)
		require.NoError(t, err)
		assert.Equal(t, "alias/rotated", got.AwsKeyInfo.KeyAlias)
		assert.Equal(t, []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices}, got.UseCases)
	})
	t.Run("get of a missing key configuration is RESOURCE_DOES_NOT_EXIST", func(t *testing.T) {
		_, err := keys.GetByCustomerManagedKeyId(ctx, "nope")
		assert.ErrorIs(t, err, apierr.ErrResourceDoesNotExist)
		assert.ErrorIs(t, err, apierr.ErrNotFound)
	})
	t.Run("delete of a key configuration a workspace uses is INVALID_STATE", func(t *testing.T) {
		_, err := keys.DeleteByCustomerManagedKeyId(ctx, oldManagedKey)
		assert.ErrorIs(t, err, apierr.ErrInvalidState)
		assert.Len(t, s.KeyConfigs(), 5)
	})
	t.Run("delete of an unused key configuration removes it", func(t *testing.T) {
		_, err := keys.DeleteByCustomerManagedKeyId(ctx, created.CustomerManagedKeyId)
		require.NoError(t, err)
		_, err = keys.GetByCustomerManagedKeyId(ctx, created.CustomerManagedKeyId)
		assert.ErrorIs(t, err, apierr.ErrResourceDoesNotExist)
	})
}

func TestWorkspaceGetAndList(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{})
	seedRotation(t, s)
	api := provisioning.NewWorkspaces(accountClient(t, s))

	got, err := api.GetByWorkspaceId(ctx, wsID)
	require.NoError(t, err)
	assert.Equal(t, wsID, got.WorkspaceId)
	assert.Equal(t, testAccount, got.AccountId)
	assert.Equal(t, provisioning.WorkspaceStatusRunning, got.WorkspaceStatus)
	assert.Equal(t, oldManagedKey, got.ManagedServicesCustomerManagedKeyId)

	all, err := api.List(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 1)

	_, err = api.GetByWorkspaceId(ctx, 7)
	assert.ErrorIs(t, err, apierr.ErrResourceDoesNotExist)
	assert.EqualError(t, err, "Workspace 7 does not exist")
}

func patchManagedKey(ctx context.Context, api *provisioning.WorkspacesAPI, key string) (*provisioning.WaitGetWorkspaceRunning[provisioning.Workspace], error) {
	return api.Update(ctx, provisioning.UpdateWorkspaceRequest{
		WorkspaceId:             wsID,
		CustomerFacingWorkspace: provisioning.Workspace{ManagedServicesCustomerManagedKeyId: key},
		UpdateMask:              "managed_services_customer_managed_key_id",
	})
}

func TestWorkspacePatchWaitsForClassicComputeToStop(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{})
	seedRotation(t, s)
	clusterID := s.AddCluster(wsID, compute.ClusterDetails{ClusterName: "etl"})
	api := provisioning.NewWorkspaces(accountClient(t, s))
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))

	_, err := patchManagedKey(ctx, api, newManagedKey)
	require.Error(t, err)
	assert.ErrorIs(t, err, apierr.ErrInvalidState)
	assert.EqualError(t, err, computeRunningMessage)
	assert.Equal(t, oldManagedKey, s.Workspace(wsID).ManagedServicesCustomerManagedKeyId, "a refused PATCH changes nothing")

	require.NoError(t, clusters.DeleteByClusterId(ctx, clusterID))
	wait, err := patchManagedKey(ctx, api, newManagedKey)
	require.NoError(t, err)
	assert.Equal(t, wsID, wait.WorkspaceId, "the SDK waiter polls the workspace id echoed by the PATCH")
	assert.Equal(t, newManagedKey, wait.Response.ManagedServicesCustomerManagedKeyId)

	ws, err := wait.GetWithTimeout(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, provisioning.WorkspaceStatusRunning, ws.WorkspaceStatus)
	assert.Equal(t, newManagedKey, ws.ManagedServicesCustomerManagedKeyId)
	assert.Equal(t, storageKey, ws.StorageCustomerManagedKeyId, "fields outside the mask are untouched")

	var patch *Request
	for _, r := range s.Requests() {
		if r.Method == "PATCH" && r.Status == 200 {
			patch = &r
		}
	}
	require.NotNil(t, patch)
	assert.Equal(t, "update_mask=managed_services_customer_managed_key_id", patch.RawQuery)
	assert.JSONEq(t, `{"managed_services_customer_managed_key_id":"`+newManagedKey+`"}`, patch.Body)
	assert.Equal(t, wsID, patch.WorkspaceID)
}

func TestWorkspacePatchRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(s *Server)
		req     provisioning.UpdateWorkspaceRequest
		wantErr error
		wantMsg string
	}{
		{
			name:    "a workspace that does not exist is RESOURCE_DOES_NOT_EXIST",
			req:     managedKeyReq(7, newManagedKey),
			wantErr: apierr.ErrResourceDoesNotExist,
		},
		{
			name: "a workspace that is not RUNNING is INVALID_STATE",
			setup: func(s *Server) {
				ws := s.Workspace(wsID)
				ws.WorkspaceStatus = provisioning.WorkspaceStatusFailed
				s.AddWorkspace(ws)
			},
			req:     managedKeyReq(wsID, newManagedKey),
			wantErr: apierr.ErrInvalidState,
		},
		{
			name:    "a key configuration id that does not exist is INVALID_PARAMETER_VALUE",
			req:     managedKeyReq(wsID, "does-not-exist"),
			wantErr: apierr.ErrInvalidParameterValue,
			wantMsg: "Invalid customerManagedKeyId",
		},
		{
			name:    "a storage-only key for managed services is INVALID_PARAMETER_VALUE",
			req:     managedKeyReq(wsID, otherStorage),
			wantErr: apierr.ErrInvalidParameterValue,
		},
		{
			name: "a key in another region than the workspace is INVALID_PARAMETER_VALUE",
			setup: func(s *Server) {
				s.AddKeyConfig(provisioning.CustomerManagedKey{
					CustomerManagedKeyId: "cmk-west",
					AwsKeyInfo:           &provisioning.AwsKeyInfo{KeyArn: keyARN("us-west-2", "k")},
					UseCases:             []provisioning.KeyUseCase{provisioning.KeyUseCaseManagedServices},
				})
			},
			req:     managedKeyReq(wsID, "cmk-west"),
			wantErr: apierr.ErrInvalidParameterValue,
		},
		{
			name: "replacing the storage key is INVALID_PARAMETER_VALUE",
			req: provisioning.UpdateWorkspaceRequest{
				WorkspaceId:             wsID,
				CustomerFacingWorkspace: provisioning.Workspace{StorageCustomerManagedKeyId: otherStorage},
				UpdateMask:              "storage_customer_managed_key_id",
			},
			wantErr: apierr.ErrInvalidParameterValue,
			wantMsg: "You cannot replace an existing key configuration for workspace storage",
		},
		{
			name: "a pool with idle instances is INVALID_STATE",
			setup: func(s *Server) {
				s.AddPool(wsID, compute.InstancePoolAndStats{InstancePoolName: "warm", NodeTypeId: "i3.xlarge", MinIdleInstances: 1})
			},
			req:     managedKeyReq(wsID, newManagedKey),
			wantErr: apierr.ErrInvalidState,
			wantMsg: computeRunningMessage,
		},
		{
			name: "a classic SQL warehouse that is starting is INVALID_STATE",
			setup: func(s *Server) {
				s.AddWarehouse(wsID, sql.EndpointInfo{Name: "bi", State: sql.StateStarting})
			},
			req:     managedKeyReq(wsID, newManagedKey),
			wantErr: apierr.ErrInvalidState,
			wantMsg: computeRunningMessage,
		},
		{
			name: "a cluster that is still terminating is INVALID_STATE",
			setup: func(s *Server) {
				s.AddCluster(wsID, compute.ClusterDetails{State: compute.StateTerminating})
			},
			req:     managedKeyReq(wsID, newManagedKey),
			wantErr: apierr.ErrInvalidState,
			wantMsg: computeRunningMessage,
		},
		{
			name: "a running pipeline is INVALID_STATE",
			setup: func(s *Server) {
				s.AddPipeline(wsID, PipelineSeed{Name: "stream", Continuous: true})
			},
			req:     managedKeyReq(wsID, newManagedKey),
			wantErr: apierr.ErrInvalidState,
			wantMsg: computeRunningMessage,
		},
		{
			name: "a read-only field with a new value is INVALID_PARAMETER_VALUE",
			req: provisioning.UpdateWorkspaceRequest{
				WorkspaceId:             wsID,
				CustomerFacingWorkspace: provisioning.Workspace{AwsRegion: "eu-west-1"},
			},
			wantErr: apierr.ErrInvalidParameterValue,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startFake(t, Options{})
			seedRotation(t, s)
			if tt.setup != nil {
				tt.setup(s)
			}
			before := s.Workspace(wsID)
			_, err := provisioning.NewWorkspaces(accountClient(t, s)).Update(context.Background(), tt.req)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.wantErr)
			if tt.wantMsg != "" {
				assert.EqualError(t, err, tt.wantMsg)
			}
			assert.Equal(t, before, s.Workspace(wsID), "a refused PATCH changes nothing")
		})
	}
}

func managedKeyReq(ws int64, key string) provisioning.UpdateWorkspaceRequest {
	return provisioning.UpdateWorkspaceRequest{
		WorkspaceId:             ws,
		CustomerFacingWorkspace: provisioning.Workspace{ManagedServicesCustomerManagedKeyId: key},
		UpdateMask:              "managed_services_customer_managed_key_id",
	}
}

func TestWorkspacePatchAccepts(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *Server)
		req   provisioning.UpdateWorkspaceRequest
		want  func(t *testing.T, ws provisioning.Workspace)
	}{
		{
			name: "a serverless warehouse and stopped compute do not block the update",
			setup: func(s *Server) {
				s.AddWarehouse(wsID, sql.EndpointInfo{Name: "serverless", EnableServerlessCompute: true})
				s.AddWarehouse(wsID, sql.EndpointInfo{Name: "classic", State: sql.StateStopped})
				s.AddCluster(wsID, compute.ClusterDetails{State: compute.StateTerminated})
				s.AddPool(wsID, compute.InstancePoolAndStats{NodeTypeId: "i3.xlarge"})
				s.AddPipeline(wsID, PipelineSeed{Name: "nightly"})
			},
			req: managedKeyReq(wsID, newManagedKey),
			want: func(t *testing.T, ws provisioning.Workspace) {
				assert.Equal(t, newManagedKey, ws.ManagedServicesCustomerManagedKeyId)
			},
		},
		{
			name: "a storage key can be added to a workspace that has none",
			setup: func(s *Server) {
				ws := s.Workspace(wsID)
				ws.StorageCustomerManagedKeyId = ""
				s.AddWorkspace(ws)
			},
			req: provisioning.UpdateWorkspaceRequest{
				WorkspaceId:             wsID,
				CustomerFacingWorkspace: provisioning.Workspace{StorageCustomerManagedKeyId: otherStorage},
				UpdateMask:              "storage_customer_managed_key_id",
			},
			want: func(t *testing.T, ws provisioning.Workspace) {
				assert.Equal(t, otherStorage, ws.StorageCustomerManagedKeyId)
			},
		},
		{
			name: "re-sending the storage key the workspace already has is not a replacement",
			req: provisioning.UpdateWorkspaceRequest{
				WorkspaceId: wsID,
				CustomerFacingWorkspace: provisioning.Workspace{
					ManagedServicesCustomerManagedKeyId: newManagedKey,
					StorageCustomerManagedKeyId:         storageKey,
				},
				UpdateMask: "managed_services_customer_managed_key_id,storage_customer_managed_key_id",
			},
			want: func(t *testing.T, ws provisioning.Workspace) {
				assert.Equal(t, newManagedKey, ws.ManagedServicesCustomerManagedKeyId)
				assert.Equal(t, storageKey, ws.StorageCustomerManagedKeyId)
			},
		},
		{
			name: "a body field outside the update mask is ignored",
			req: provisioning.UpdateWorkspaceRequest{
				WorkspaceId: wsID,
				CustomerFacingWorkspace: provisioning.Workspace{
					ManagedServicesCustomerManagedKeyId: newManagedKey,
					StorageCustomerManagedKeyId:         otherStorage,
				},
				UpdateMask: "managed_services_customer_managed_key_id",
			},
			want: func(t *testing.T, ws provisioning.Workspace) {
				assert.Equal(t, newManagedKey, ws.ManagedServicesCustomerManagedKeyId)
				assert.Equal(t, storageKey, ws.StorageCustomerManagedKeyId)
			},
		},
		{
			name: "without a mask every field in the body is applied",
			req: provisioning.UpdateWorkspaceRequest{
				WorkspaceId:             wsID,
				CustomerFacingWorkspace: provisioning.Workspace{ManagedServicesCustomerManagedKeyId: newManagedKey, CustomTags: map[string]string{"team": "data"}},
			},
			want: func(t *testing.T, ws provisioning.Workspace) {
				assert.Equal(t, newManagedKey, ws.ManagedServicesCustomerManagedKeyId)
				assert.Equal(t, map[string]string{"team": "data"}, ws.CustomTags)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startFake(t, Options{})
			seedRotation(t, s)
			if tt.setup != nil {
				tt.setup(s)
			}
			wait, err := provisioning.NewWorkspaces(accountClient(t, s)).Update(context.Background(), tt.req)
			require.NoError(t, err)
			assert.Equal(t, wsID, wait.Response.WorkspaceId)
			tt.want(t, s.Workspace(wsID))
		})
	}
}

func TestWorkspacePatchBehaviours(t *testing.T) {
	ctx := context.Background()

	t.Run("PROVISIONING for a while, then RUNNING with the new key", func(t *testing.T) {
		clock := newFakeClock()
		s := startFake(t, Options{Now: clock.Now})
		seedRotation(t, s)
		s.SetPatchBehaviour(wsID, PatchBehaviour{ProvisioningFor: 10 * time.Minute})
		api := provisioning.NewWorkspaces(accountClient(t, s))

		wait, err := patchManagedKey(ctx, api, newManagedKey)
		require.NoError(t, err)
		assert.Equal(t, provisioning.WorkspaceStatusProvisioning, wait.Response.WorkspaceStatus)

		clock.Advance(9 * time.Minute)
		ws, err := api.GetByWorkspaceId(ctx, wsID)
		require.NoError(t, err)
		assert.Equal(t, provisioning.WorkspaceStatusProvisioning, ws.WorkspaceStatus)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)

		_, err = patchManagedKey(ctx, api, newManagedKey)
		assert.ErrorIs(t, err, apierr.ErrInvalidState, "a PROVISIONING workspace cannot be updated")

		_, err = provisioning.NewEncryptionKeys(accountClient(t, s)).DeleteByCustomerManagedKeyId(ctx, newManagedKey)
		assert.ErrorIs(t, err, apierr.ErrInvalidState, "the key of an update in flight is in use")

		clock.Advance(time.Minute)
		ws, err = api.GetByWorkspaceId(ctx, wsID)
		require.NoError(t, err)
		assert.Equal(t, provisioning.WorkspaceStatusRunning, ws.WorkspaceStatus)
		assert.Equal(t, newManagedKey, ws.ManagedServicesCustomerManagedKeyId)
	})

	t.Run("a customer-managed VPC stays RUNNING while the update lands late", func(t *testing.T) {
		clock := newFakeClock()
		s := startFake(t, Options{Now: clock.Now, WorkspaceUpdateDelay: 3 * time.Minute})
		seedRotation(t, s)
		api := provisioning.NewWorkspaces(accountClient(t, s))

		_, err := patchManagedKey(ctx, api, newManagedKey)
		require.NoError(t, err)
		ws := s.Workspace(wsID)
		assert.Equal(t, provisioning.WorkspaceStatusRunning, ws.WorkspaceStatus)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)

		_, err = patchManagedKey(ctx, api, newManagedKey)
		assert.NoError(t, err, "the same PATCH again is a harmless retry")
		_, err = patchManagedKey(ctx, api, oldManagedKey)
		assert.ErrorIs(t, err, apierr.ErrInvalidState, "a different PATCH races the first")

		clock.Advance(3 * time.Minute)
		assert.Equal(t, newManagedKey, s.Workspace(wsID).ManagedServicesCustomerManagedKeyId)
	})

	t.Run("a silent revert shows the old key again and RUNNING", func(t *testing.T) {
		clock := newFakeClock()
		s := startFake(t, Options{Now: clock.Now, WorkspaceUpdateDelay: time.Minute})
		seedRotation(t, s)
		s.SetPatchBehaviour(wsID, PatchBehaviour{SilentRevert: true})
		api := provisioning.NewWorkspaces(accountClient(t, s))

		wait, err := patchManagedKey(ctx, api, newManagedKey)
		require.NoError(t, err)
		assert.Equal(t, newManagedKey, wait.Response.ManagedServicesCustomerManagedKeyId)
		assert.Equal(t, newManagedKey, s.Workspace(wsID).ManagedServicesCustomerManagedKeyId, "the new key shows until the delay ends")

		clock.Advance(time.Minute)
		ws, err := api.GetByWorkspaceId(ctx, wsID)
		require.NoError(t, err)
		assert.Equal(t, provisioning.WorkspaceStatusRunning, ws.WorkspaceStatus)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)
	})

	t.Run("a revert at the first start shows the new key until compute starts, then the old one", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.AddCluster(wsID, compute.ClusterDetails{ClusterId: "c-1", ClusterSource: compute.ClusterSourceUi, State: compute.StateTerminated})
		s.SetPatchBehaviour(wsID, PatchBehaviour{RevertAtFirstStart: true})
		api := provisioning.NewWorkspaces(accountClient(t, s))

		_, err := patchManagedKey(ctx, api, newManagedKey)
		require.NoError(t, err)
		for range 3 {
			ws, err := api.GetByWorkspaceId(ctx, wsID)
			require.NoError(t, err)
			assert.Equal(t, newManagedKey, ws.ManagedServicesCustomerManagedKeyId, "every look before a start sees the new key")
		}
		require.NoError(t, compute.NewClusters(workspaceClient(t, s, wsID)).StartByClusterId(ctx, "c-1"))
		ws, err := api.GetByWorkspaceId(ctx, wsID)
		require.NoError(t, err)
		assert.Equal(t, provisioning.WorkspaceStatusRunning, ws.WorkspaceStatus)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)
	})

	t.Run("a silent revert with no delay is visible on the next GET", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.SetPatchBehaviour(wsID, PatchBehaviour{SilentRevert: true})
		api := provisioning.NewWorkspaces(accountClient(t, s))

		_, err := patchManagedKey(ctx, api, newManagedKey)
		require.NoError(t, err)
		ws, err := api.GetByWorkspaceId(ctx, wsID)
		require.NoError(t, err)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)
	})

	t.Run("an update that ends FAILED halts the SDK waiter", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.SetPatchBehaviour(wsID, PatchBehaviour{EndIn: provisioning.WorkspaceStatusFailed})
		api := provisioning.NewWorkspaces(accountClient(t, s))

		wait, err := patchManagedKey(ctx, api, newManagedKey)
		require.NoError(t, err)
		_, err = wait.GetWithTimeout(5 * time.Second)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "failed to reach RUNNING, got FAILED")
		ws := s.Workspace(wsID)
		assert.NotEmpty(t, ws.WorkspaceStatusMessage)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)
	})

	t.Run("a stuck update stays PROVISIONING", func(t *testing.T) {
		clock := newFakeClock()
		s := startFake(t, Options{Now: clock.Now})
		seedRotation(t, s)
		s.SetPatchBehaviour(wsID, PatchBehaviour{StuckProvisioning: true})

		_, err := patchManagedKey(ctx, provisioning.NewWorkspaces(accountClient(t, s)), newManagedKey)
		require.NoError(t, err)
		clock.Advance(24 * time.Hour)
		ws := s.Workspace(wsID)
		assert.Equal(t, provisioning.WorkspaceStatusProvisioning, ws.WorkspaceStatus)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)
		spans := s.WorkspaceUpdates()
		require.Len(t, spans, 1)
		assert.True(t, spans[0].Stuck)
		assert.True(t, spans[0].Provisioning(clock.Now()))
	})

	t.Run("a rollback is PROVISIONING on the old key, then RUNNING on the old key", func(t *testing.T) {
		clock := newFakeClock()
		s := startFake(t, Options{Now: clock.Now})
		seedRotation(t, s)
		s.SetPatchBehaviour(wsID, PatchBehaviour{ProvisioningFor: 10 * time.Minute, Rollback: true})
		api := provisioning.NewWorkspaces(accountClient(t, s))

		accepted := clock.Now()
		_, err := patchManagedKey(ctx, api, newManagedKey)
		require.NoError(t, err)
		clock.Advance(5 * time.Minute)
		ws := s.Workspace(wsID)
		assert.Equal(t, provisioning.WorkspaceStatusProvisioning, ws.WorkspaceStatus)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId, "the new key never shows")
		clock.Advance(5 * time.Minute)
		ws = s.Workspace(wsID)
		assert.Equal(t, provisioning.WorkspaceStatusRunning, ws.WorkspaceStatus)
		assert.Equal(t, oldManagedKey, ws.ManagedServicesCustomerManagedKeyId)

		spans := s.WorkspaceUpdates()
		require.Len(t, spans, 1)
		// WorkspaceUpdateDelay is 0: the update lands when PROVISIONING ends.
		assert.Equal(t, WorkspaceUpdateSpan{WorkspaceID: wsID, Accepted: accepted, ProvisioningUntil: accepted.Add(10 * time.Minute),
			Landed: accepted.Add(10 * time.Minute)}, spans[0])
		assert.True(t, spans[0].Provisioning(accepted.Add(9*time.Minute)))
		assert.False(t, spans[0].Provisioning(accepted.Add(10*time.Minute)))
		assert.False(t, spans[0].Provisioning(accepted.Add(-time.Second)))
	})
}

func TestALostResponseFaultAppliesTheCallAndAnswersTheFault(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{500, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			clock := newFakeClock()
			s := startFake(t, Options{Now: clock.Now})
			seedRotation(t, s)
			s.SetPatchBehaviour(wsID, PatchBehaviour{ProvisioningFor: 10 * time.Minute})
			s.InjectFault(Fault{Method: "PATCH", Path: "/workspaces/", Status: status, LoseResponse: true, Times: 1})
			api := provisioning.NewWorkspaces(accountClient(t, s))

			_, err := patchManagedKey(ctx, api, newManagedKey)
			var apiErr *apierr.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, status, apiErr.StatusCode, "the caller sees the fault")
			ws := s.Workspace(wsID)
			assert.Equal(t, provisioning.WorkspaceStatusProvisioning, ws.WorkspaceStatus, "but the update was accepted")
			require.Len(t, s.WorkspaceUpdates(), 1)

			// The retry meets the update in flight: refused because the workspace is not RUNNING,
			// with a message that does not claim compute is running.
			_, err = patchManagedKey(ctx, api, newManagedKey)
			require.ErrorIs(t, err, apierr.ErrInvalidState)
			assert.Contains(t, err.Error(), "PROVISIONING")
			assert.NotContains(t, err.Error(), "terminate all")

			var patches []Request
			for _, r := range s.Requests() {
				if r.Method == "PATCH" {
					patches = append(patches, r)
				}
			}
			require.Len(t, patches, 2)
			assert.True(t, patches[0].Injected)
			assert.Equal(t, status, patches[0].Status)
			assert.False(t, patches[1].Injected)
		})
	}
}

func TestPipelineComputeBlocksUntilStopped(t *testing.T) {
	ctx := context.Background()
	s := startFake(t, Options{})
	seedRotation(t, s)
	clusterID := s.AddCluster(wsID, compute.ClusterDetails{ClusterSource: compute.ClusterSourcePipeline})
	pipelineID := s.AddPipeline(wsID, PipelineSeed{Name: "stream", Continuous: true, ClusterID: clusterID})
	api := provisioning.NewWorkspaces(accountClient(t, s))

	_, err := patchManagedKey(ctx, api, newManagedKey)
	require.ErrorIs(t, err, apierr.ErrInvalidState)

	_, err = pipelines.NewPipelines(workspaceClient(t, s, wsID)).Stop(ctx, pipelines.StopRequest{PipelineId: pipelineID})
	require.NoError(t, err)
	_, err = patchManagedKey(ctx, api, newManagedKey)
	require.NoError(t, err)
	assert.Equal(t, compute.StateTerminated, s.Cluster(wsID, clusterID).State)
}

func TestWrongAccountIsRefused(t *testing.T) {
	s := startFake(t, Options{})
	seedRotation(t, s)
	c := newClient(t, configFor(s, "someone-elses-account"))
	_, err := provisioning.NewWorkspaces(c).List(context.Background())
	require.Error(t, err)
	assert.True(t, errors.Is(err, apierr.ErrPermissionDenied))
}
