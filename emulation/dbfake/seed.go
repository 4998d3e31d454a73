package dbfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/databricks/databricks-sdk-go/service/sql"
)

// PipelineSeed describes a pipeline. State defaults to RUNNING for a continuous pipeline and IDLE
// otherwise. ClusterID may name a cluster seeded in the same workspace: stopping the pipeline
// terminates it and starting an update starts it.
type PipelineSeed struct {
	PipelineID      string                  `json:"pipeline_id,omitempty"`
	Name            string                  `json:"name,omitempty"`
	State           pipelines.PipelineState `json:"state,omitempty"`
	Continuous      bool                    `json:"continuous,omitempty"`
	ClusterID       string                  `json:"cluster_id,omitempty"`
	CreatorUserName string                  `json:"creator_user_name,omitempty"`
}

// WorkspaceSeed is one workspace and its classic compute, in the SDK's JSON shapes.
type WorkspaceSeed struct {
	Workspace  provisioning.Workspace         `json:"workspace"`
	Clusters   []compute.ClusterDetails       `json:"clusters,omitempty"`
	Pools      []compute.InstancePoolAndStats `json:"pools,omitempty"`
	Warehouses []sql.EndpointInfo             `json:"warehouses,omitempty"`
	Pipelines  []PipelineSeed                 `json:"pipelines,omitempty"`
	// TerminatedJobClusters adds that many job clusters terminated in the last 30 days, as a
	// job-heavy workspace has: clusters/list returns them all unless filter_by says otherwise.
	TerminatedJobClusters int `json:"terminated_job_clusters,omitempty"`
}

// SeedFile is the JSON document a sandbox or a test loads into the fake.
type SeedFile struct {
	Workspaces []WorkspaceSeed                   `json:"workspaces"`
	KeyConfigs []provisioning.CustomerManagedKey `json:"key_configs,omitempty"`
	// Credentials are credential configurations (the workspace's cross-account role) a workspace's
	// credentials_id may name.
	Credentials []provisioning.Credential `json:"credentials,omitempty"`
}

// DecodeSeed reads a SeedFile, refusing unknown top-level keys so a typo does not seed nothing.
func DecodeSeed(r io.Reader) (SeedFile, error) {
	var seed SeedFile
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&seed); err != nil {
		return SeedFile{}, fmt.Errorf("decode seed: %w", err)
	}
	return seed, nil
}

// ReadSeedFile reads a SeedFile from disk.
func ReadSeedFile(path string) (SeedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return SeedFile{}, fmt.Errorf("open seed: %w", err)
	}
	defer f.Close()
	seed, err := DecodeSeed(f)
	if err != nil {
		return SeedFile{}, fmt.Errorf("%s: %w", path, err)
	}
	return seed, nil
}

// Seed validates the whole seed and then loads it; on error nothing is loaded. Key configurations
// load first, and a workspace may only reference a key configuration that exists.
func (s *Server) Seed(seed SeedFile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.validateSeed(seed); err != nil {
		return err
	}
	now := s.now()
	for _, c := range seed.Credentials {
		s.addCredential(c, now)
	}
	for _, k := range seed.KeyConfigs {
		s.addKeyConfig(k, now)
	}
	for _, w := range seed.Workspaces {
		id := s.addWorkspace(w.Workspace, now)
		for _, c := range w.Clusters {
			s.addCluster(id, c, now)
		}
		for _, p := range w.Pools {
			s.addPool(id, p)
		}
		for _, wh := range w.Warehouses {
			s.addWarehouse(id, wh)
		}
		for _, p := range w.Pipelines {
			s.addPipeline(id, p, now)
		}
		s.addTerminatedJobClusters(id, w.TerminatedJobClusters, now)
	}
	return nil
}

func (s *Server) validateSeed(seed SeedFile) error {
	var errs []error
	keys := map[string]provisioning.CustomerManagedKey{}
	for id, k := range s.keys.byID {
		keys[id] = *k
	}
	for i, k := range seed.KeyConfigs {
		at := fmt.Sprintf("key_configs[%d]", i)
		if k.AwsKeyInfo == nil || !kmsKeyARN.MatchString(k.AwsKeyInfo.KeyArn) {
			errs = append(errs, fmt.Errorf("%s: aws_key_info.key_arn must be a KMS key ARN", at))
		}
		if len(k.UseCases) == 0 || slices.ContainsFunc(k.UseCases, func(uc provisioning.KeyUseCase) bool { return !validUseCase(uc) }) {
			errs = append(errs, fmt.Errorf("%s: use_cases must be a non-empty list of MANAGED_SERVICES, STORAGE", at))
		}
		if k.CustomerManagedKeyId != "" {
			keys[k.CustomerManagedKeyId] = k
		}
	}
	creds := map[string]bool{}
	for id := range s.credentials.byID {
		creds[id] = true
	}
	for i, c := range seed.Credentials {
		if c.CredentialsId == "" || c.AwsCredentials == nil || c.AwsCredentials.StsRole == nil || !iamRoleARN.MatchString(c.AwsCredentials.StsRole.RoleArn) {
			errs = append(errs, fmt.Errorf("credentials[%d]: credentials_id and aws_credentials.sts_role.role_arn (an IAM role ARN) are required", i))
			continue
		}
		creds[c.CredentialsId] = true
	}
	seen := map[int64]bool{}
	for i, w := range seed.Workspaces {
		at := fmt.Sprintf("workspaces[%d]", i)
		ws := w.Workspace
		if ws.WorkspaceId == 0 {
			errs = append(errs, fmt.Errorf("%s: workspace.workspace_id is required", at))
		} else if seen[ws.WorkspaceId] {
			errs = append(errs, fmt.Errorf("%s: workspace_id %d appears twice", at, ws.WorkspaceId))
		}
		seen[ws.WorkspaceId] = true
		if ws.WorkspaceStatus != "" {
			errs = appendSetErr(errs, at+".workspace.workspace_status", new(provisioning.WorkspaceStatus), string(ws.WorkspaceStatus))
		}
		for _, ref := range []struct{ field, id string }{
			{"managed_services_customer_managed_key_id", ws.ManagedServicesCustomerManagedKeyId},
			{"storage_customer_managed_key_id", ws.StorageCustomerManagedKeyId},
		} {
			if _, ok := keys[ref.id]; ref.id != "" && !ok {
				errs = append(errs, fmt.Errorf("%s.workspace.%s: key configuration %q is not seeded", at, ref.field, ref.id))
			}
		}
		if w.TerminatedJobClusters < 0 {
			errs = append(errs, fmt.Errorf("%s: terminated_job_clusters must not be negative, got %d", at, w.TerminatedJobClusters))
		}
		if ws.CredentialsId != "" && !creds[ws.CredentialsId] {
			errs = append(errs, fmt.Errorf("%s.workspace.credentials_id: credential configuration %q is not seeded", at, ws.CredentialsId))
		}
		clusterIDs := map[string]bool{}
		for j, c := range w.Clusters {
			cat := fmt.Sprintf("%s.clusters[%d]", at, j)
			if c.ClusterId != "" && clusterIDs[c.ClusterId] {
				errs = append(errs, fmt.Errorf("%s: cluster_id %s appears twice", cat, c.ClusterId))
			}
			clusterIDs[c.ClusterId] = true
			if c.State != "" {
				errs = appendSetErr(errs, cat+".state", new(compute.State), string(c.State))
			}
			if c.ClusterSource != "" {
				errs = appendSetErr(errs, cat+".cluster_source", new(compute.ClusterSource), string(c.ClusterSource))
			}
		}
		for j, p := range w.Pools {
			if p.NodeTypeId == "" {
				errs = append(errs, fmt.Errorf("%s.pools[%d]: node_type_id is required", at, j))
			}
			if p.State != "" {
				errs = appendSetErr(errs, fmt.Sprintf("%s.pools[%d].state", at, j), new(compute.InstancePoolState), string(p.State))
			}
		}
		for j, wh := range w.Warehouses {
			if wh.State != "" {
				errs = appendSetErr(errs, fmt.Sprintf("%s.warehouses[%d].state", at, j), new(sql.State), string(wh.State))
			}
		}
		for j, p := range w.Pipelines {
			if p.State != "" {
				errs = appendSetErr(errs, fmt.Sprintf("%s.pipelines[%d].state", at, j), new(pipelines.PipelineState), string(p.State))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dbfake: invalid seed: %w", errors.Join(errs...))
	}
	return nil
}

// appendSetErr validates an enum value with the SDK's own Set, which knows the allowed values.
func appendSetErr(errs []error, at string, enum interface{ Set(string) error }, v string) []error {
	if err := enum.Set(v); err != nil {
		return append(errs, fmt.Errorf("%s: %w", at, err))
	}
	return errs
}

// AddWorkspace adds or replaces a workspace and returns its id (generated when 0). Status defaults
// to RUNNING; AccountId is always the fake's account. Replacing a workspace drops any update in
// flight but keeps its compute.
func (s *Server) AddWorkspace(ws provisioning.Workspace) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addWorkspace(ws, s.now())
}

func (s *Server) addWorkspace(ws provisioning.Workspace, now time.Time) int64 {
	if ws.WorkspaceId == 0 {
		ws.WorkspaceId = 1_000_000_000_000_000 + rand.Int64N(8_000_000_000_000_000)
	}
	ws.AccountId = s.opts.AccountID
	if ws.WorkspaceStatus == "" {
		ws.WorkspaceStatus = provisioning.WorkspaceStatusRunning
	}
	if ws.WorkspaceStatusMessage == "" && ws.WorkspaceStatus == provisioning.WorkspaceStatusRunning {
		ws.WorkspaceStatusMessage = msgRunning
	}
	if ws.CreationTime == 0 {
		ws.CreationTime = millis(now)
	}
	ws.ForceSendFields = nil
	s.workspaces.put(strconv.FormatInt(ws.WorkspaceId, 10), &workspaceRec{ws: ws})
	return ws.WorkspaceId
}

// AddCredential adds or replaces a credential configuration and returns its id (generated when empty).
func (s *Server) AddCredential(c provisioning.Credential) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addCredential(c, s.now())
}

func (s *Server) addCredential(c provisioning.Credential, now time.Time) string {
	if c.CredentialsId == "" {
		c.CredentialsId = newUUID()
	}
	c.AccountId = s.opts.AccountID
	if c.CreationTime == 0 {
		c.CreationTime = millis(now)
	}
	if c.AwsCredentials != nil {
		ac := *c.AwsCredentials
		if ac.StsRole != nil {
			role := *ac.StsRole
			role.ForceSendFields = nil
			ac.StsRole = &role
		}
		c.AwsCredentials = &ac
	}
	c.ForceSendFields = nil
	s.credentials.put(c.CredentialsId, &c)
	return c.CredentialsId
}

// AddKeyConfig adds or replaces a key configuration and returns its id (generated when empty).
// key_region is inferred from the ARN when empty.
func (s *Server) AddKeyConfig(k provisioning.CustomerManagedKey) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addKeyConfig(k, s.now())
}

func (s *Server) addKeyConfig(k provisioning.CustomerManagedKey, now time.Time) string {
	if k.CustomerManagedKeyId == "" {
		k.CustomerManagedKeyId = newUUID()
	}
	k.AccountId = s.opts.AccountID
	if k.CreationTime == 0 {
		k.CreationTime = millis(now)
	}
	if k.AwsKeyInfo != nil {
		info := *k.AwsKeyInfo
		if m := kmsKeyARN.FindStringSubmatch(info.KeyArn); m != nil && info.KeyRegion == "" {
			info.KeyRegion = m[2]
		}
		k.AwsKeyInfo = &info
	}
	k.UseCases = slices.Clone(k.UseCases)
	k.ForceSendFields = nil
	s.keys.put(k.CustomerManagedKeyId, &k)
	return k.CustomerManagedKeyId
}

// AddCluster adds or replaces a cluster and returns its id (generated when empty). State
// defaults to RUNNING and cluster_source to UI.
func (s *Server) AddCluster(workspaceID int64, c compute.ClusterDetails) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addCluster(workspaceID, c, s.now())
}

func (s *Server) addCluster(ws int64, c compute.ClusterDetails, now time.Time) string {
	if c.ClusterId == "" {
		c.ClusterId = now.Format("0102-150405-") + randomHex(4)
	}
	if c.State == "" {
		c.State = compute.StateRunning
	}
	if c.ClusterSource == "" {
		c.ClusterSource = compute.ClusterSourceUi
	}
	if c.State == compute.StateRunning && c.StartTime == 0 {
		c.StartTime = millis(now)
	}
	c.ForceSendFields = nil
	s.computeOf(ws).clusters.put(c.ClusterId, &clusterRec{d: c})
	return c.ClusterId
}

// AddTerminatedJobClusters adds n job clusters that ran and terminated over the last 30 days (the
// history clusters/list returns), spread evenly in time, and returns their ids.
func (s *Server) AddTerminatedJobClusters(workspaceID int64, n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addTerminatedJobClusters(workspaceID, n, s.now())
}

func (s *Server) addTerminatedJobClusters(ws int64, n int, now time.Time) []string {
	ids := make([]string, 0, n)
	for i := range n {
		ended := now.Add(-time.Duration(i+1) * 30 * 24 * time.Hour / time.Duration(n+1))
		id := s.addCluster(ws, compute.ClusterDetails{
			ClusterId: fmt.Sprintf("%s-job-%06d", ended.Format("0102-150405"), i), ClusterName: fmt.Sprintf("job-%d-run-%d", i%97, i),
			ClusterSource: compute.ClusterSourceJob, State: compute.StateTerminated,
			StartTime: millis(ended.Add(-20 * time.Minute)), TerminatedTime: millis(ended),
			TerminationReason: &compute.TerminationReason{Code: compute.TerminationReasonCodeJobFinished, Type: compute.TerminationReasonTypeSuccess},
		}, now)
		ids = append(ids, id)
	}
	return ids
}

// StartClusterBehindRotator adds (or restarts) a RUNNING cluster mid-run, as a user or a job
// would, and returns its id.
func (s *Server) StartClusterBehindRotator(workspaceID int64, c compute.ClusterDetails) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	c.State = compute.StateRunning
	c.StateMessage = ""
	c.StartTime = millis(now)
	c.TerminatedTime = 0
	c.TerminationReason = nil
	return s.addCluster(workspaceID, c, now)
}

// FailClusterStart makes every later start of the cluster fail: the start is accepted, the
// cluster goes PENDING and then TERMINATED with a CLIENT_ERROR termination reason and reason as
// its state message. An empty reason lets starts succeed again.
func (s *Server) FailClusterStart(workspaceID int64, clusterID, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wc := s.computeOf(workspaceID)
	if reason == "" {
		delete(wc.failStart, clusterID)
		return
	}
	wc.failStart[clusterID] = reason
}

// AddPool adds or replaces an instance pool and returns its id (generated when empty). State
// defaults to ACTIVE. stats.idle_count and pending_idle_count are taken from the seed (idle
// defaults to min_idle_instances); used_count is always derived from the clusters using the pool.
func (s *Server) AddPool(workspaceID int64, p compute.InstancePoolAndStats) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addPool(workspaceID, p)
}

func (s *Server) addPool(ws int64, p compute.InstancePoolAndStats) string {
	if p.InstancePoolId == "" {
		p.InstancePoolId = s.now().Format("0102-150405-") + "pool-" + randomHex(4)
	}
	if p.State == "" {
		p.State = compute.InstancePoolStateActive
	}
	rec := &poolRec{idle: p.MinIdleInstances}
	if p.Stats != nil {
		rec.idle, rec.pendingIdle = p.Stats.IdleCount, p.Stats.PendingIdleCount
	}
	p.Stats = nil
	p.ForceSendFields = presentPoolFields(p.ForceSendFields)
	rec.p = p
	s.computeOf(ws).pools.put(p.InstancePoolId, rec)
	return p.InstancePoolId
}

// AddWarehouse adds or replaces a SQL warehouse and returns its id (generated when empty). State
// defaults to RUNNING.
func (s *Server) AddWarehouse(workspaceID int64, w sql.EndpointInfo) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addWarehouse(workspaceID, w)
}

func (s *Server) addWarehouse(ws int64, w sql.EndpointInfo) string {
	if w.Id == "" {
		w.Id = randomHex(8)
	}
	if w.State == "" {
		w.State = sql.StateRunning
	}
	if w.State == sql.StateRunning && w.NumClusters == 0 {
		w.NumClusters = max(1, w.MinNumClusters)
	}
	w.ForceSendFields = nil
	s.computeOf(ws).warehouses.put(w.Id, &warehouseRec{w: w})
	return w.Id
}

// AddPipeline adds or replaces a pipeline and returns its id (generated when empty).
func (s *Server) AddPipeline(workspaceID int64, p PipelineSeed) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addPipeline(workspaceID, p, s.now())
}

func (s *Server) addPipeline(ws int64, p PipelineSeed, now time.Time) string {
	if p.PipelineID == "" {
		p.PipelineID = newUUID()
	}
	if p.State == "" {
		p.State = pipelines.PipelineStateIdle
		if p.Continuous {
			p.State = pipelines.PipelineStateRunning
		}
	}
	rec := &pipelineRec{
		id: p.PipelineID, name: p.Name, creator: p.CreatorUserName, clusterID: p.ClusterID,
		state: p.State, continuous: p.Continuous, lastModified: millis(now),
	}
	if pipelineActive(p.State) {
		rec.updates = []pipelines.UpdateStateInfo{{
			UpdateId:     newUUID(),
			State:        pipelines.UpdateStateInfoStateRunning,
			CreationTime: now.UTC().Format("2006-01-02T15:04:05.000Z"),
		}}
	}
	s.computeOf(ws).pipelines.put(p.PipelineID, rec)
	return p.PipelineID
}

// --- inspection --------------------------------------------------------------------------------

// Workspace is the workspace as a GET now would see it; the zero value when unknown.
func (s *Server) Workspace(id int64) provisioning.Workspace {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.workspaceRec(id); r != nil {
		return r.view(s.now())
	}
	return provisioning.Workspace{}
}

// Workspaces lists every workspace as a GET now would see it.
func (s *Server) Workspaces() []provisioning.Workspace {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []provisioning.Workspace
	for _, r := range s.workspaces.all() {
		out = append(out, r.view(now))
	}
	return out
}

// KeyConfigs lists the key configurations in creation order.
func (s *Server) KeyConfigs() []provisioning.CustomerManagedKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []provisioning.CustomerManagedKey
	for _, k := range s.keys.all() {
		out = append(out, *k)
	}
	return out
}

// Cluster is the cluster as a GET now would see it; the zero value when unknown.
func (s *Server) Cluster(ws int64, id string) compute.ClusterDetails {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.settleCompute(ws, s.now()).clusters.get(id); c != nil {
		return c.d
	}
	return compute.ClusterDetails{}
}

// Clusters lists the workspace's clusters in insertion order.
func (s *Server) Clusters(ws int64) []compute.ClusterDetails {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []compute.ClusterDetails
	for _, c := range s.settleCompute(ws, s.now()).clusters.all() {
		out = append(out, c.d)
	}
	return out
}

// Pool is the pool, with stats, as a GET now would see it; the zero value when unknown.
func (s *Server) Pool(ws int64, id string) compute.InstancePoolAndStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	wc := s.settleCompute(ws, s.now())
	if p := wc.pools.get(id); p != nil {
		return wc.renderPool(p)
	}
	return compute.InstancePoolAndStats{}
}

// Pools lists the workspace's pools, with stats, in insertion order.
func (s *Server) Pools(ws int64) []compute.InstancePoolAndStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	wc := s.settleCompute(ws, s.now())
	var out []compute.InstancePoolAndStats
	for _, p := range wc.pools.all() {
		out = append(out, wc.renderPool(p))
	}
	return out
}

// Warehouse is the warehouse as a GET now would see it; the zero value when unknown.
func (s *Server) Warehouse(ws int64, id string) sql.EndpointInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.settleCompute(ws, s.now()).warehouses.get(id); w != nil {
		return w.w
	}
	return sql.EndpointInfo{}
}

// Warehouses lists the workspace's warehouses in insertion order.
func (s *Server) Warehouses(ws int64) []sql.EndpointInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sql.EndpointInfo
	for _, w := range s.settleCompute(ws, s.now()).warehouses.all() {
		out = append(out, w.w)
	}
	return out
}

// Pipeline is the pipeline as a GET now would see it; the zero value when unknown.
func (s *Server) Pipeline(ws int64, id string) pipelines.GetPipelineResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.settleCompute(ws, s.now()).pipelines.get(id); p != nil {
		return p.details()
	}
	return pipelines.GetPipelineResponse{}
}

// Pipelines lists the workspace's pipelines in insertion order.
func (s *Server) Pipelines(ws int64) []pipelines.GetPipelineResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pipelines.GetPipelineResponse
	for _, p := range s.settleCompute(ws, s.now()).pipelines.all() {
		out = append(out, p.details())
	}
	return out
}
