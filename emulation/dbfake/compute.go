package dbfake

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/sql"
)

// workspaceCompute is the classic compute of one workspace. It exists independently of the
// account-level workspace record so seeding order does not matter.
type workspaceCompute struct {
	clusters   ordered[clusterRec]
	pools      ordered[poolRec]
	warehouses ordered[warehouseRec]
	pipelines  ordered[pipelineRec]
	// failStart maps a cluster id to the reason its next starts fail with.
	failStart map[string]string
}

type clusterRec struct {
	d         compute.ClusterDetails
	tl        timeline
	userActed bool // realistic mode: a user already decided whether to start it again
}

type poolRec struct {
	p           compute.InstancePoolAndStats // Stats is computed, never stored
	idle        int
	pendingIdle int
	tl          timeline
}

type warehouseRec struct {
	w         sql.EndpointInfo
	tl        timeline
	userActed bool // realistic mode: a client already decided whether to resume it
}

type pipelineRec struct {
	id, name, creator, clusterID string
	state                        pipelines.PipelineState
	continuous                   bool
	lastModified                 int64
	updates                      []pipelines.UpdateStateInfo
	tl                           timeline
}

func (s *Server) computeOf(ws int64) *workspaceCompute {
	wc := s.compute[ws]
	if wc == nil {
		wc = &workspaceCompute{failStart: map[string]string{}}
		s.compute[ws] = wc
	}
	return wc
}

func (s *Server) settleCompute(ws int64, now time.Time) *workspaceCompute {
	wc := s.computeOf(ws)
	for _, p := range wc.pipelines.all() {
		p.tl.settle(now)
	}
	for _, c := range wc.clusters.all() {
		c.tl.settle(now)
	}
	for _, p := range wc.pools.all() {
		p.tl.settle(now)
	}
	for _, w := range wc.warehouses.all() {
		w.tl.settle(now)
	}
	return wc
}

// clusterHoldsInstances: the states in which a cluster has (or is acquiring) EC2 instances.
func clusterHoldsInstances(st compute.State) bool {
	switch st {
	case compute.StatePending, compute.StateRunning, compute.StateRestarting,
		compute.StateResizing, compute.StateTerminating:
		return true
	}
	return false
}

func pipelineActive(st pipelines.PipelineState) bool {
	switch st {
	case pipelines.PipelineStateRunning, pipelines.PipelineStateStarting, pipelines.PipelineStateDeploying,
		pipelines.PipelineStateRecovering, pipelines.PipelineStateResetting, pipelines.PipelineStateStopping:
		return true
	}
	return false
}

// runningCompute lists what would make a workspace update fail: the service refuses while any
// classic compute holds EC2 instances in the workspace subnets.
func (s *Server) runningCompute(ws int64, now time.Time) []string {
	wc := s.settleCompute(ws, now)
	var out []string
	for _, c := range wc.clusters.all() {
		if clusterHoldsInstances(c.d.State) {
			out = append(out, fmt.Sprintf("cluster %s %s", c.d.ClusterId, c.d.State))
		}
	}
	for _, p := range wc.pools.all() {
		st := wc.poolStats(p)
		if st.IdleCount+st.UsedCount+st.PendingIdleCount+st.PendingUsedCount > 0 {
			out = append(out, fmt.Sprintf("pool %s idle=%d used=%d pending=%d", p.p.InstancePoolId,
				st.IdleCount, st.UsedCount, st.PendingIdleCount+st.PendingUsedCount))
		}
	}
	for _, w := range wc.warehouses.all() {
		if !w.w.EnableServerlessCompute && w.w.State != sql.StateStopped && w.w.State != sql.StateDeleted {
			out = append(out, fmt.Sprintf("warehouse %s %s", w.w.Id, w.w.State))
		}
	}
	for _, p := range wc.pipelines.all() {
		if pipelineActive(p.state) {
			out = append(out, fmt.Sprintf("pipeline %s %s", p.id, p.state))
		}
	}
	return out
}

// --- pagination --------------------------------------------------------------------------------

// paginate walks n items from the page token on, keeping those item accepts. Tokens are
// positions in insertion order, so they stay valid while objects change state or are added.
func (s *Server) paginate(n int, token string, size int, keep func(i int) bool) (idx []int, next string, err error) {
	start := 0
	if token != "" {
		b, decErr := base64.RawURLEncoding.DecodeString(token)
		v, found := strings.CutPrefix(string(b), "dbfake:")
		start, err = strconv.Atoi(v)
		if decErr != nil || !found || err != nil || start < 0 {
			return nil, "", badRequest("INVALID_PARAMETER_VALUE", "Invalid page token")
		}
	}
	if size <= 0 || size > s.opts.PageSize {
		size = s.opts.PageSize
	}
	for i := start; i < n; i++ {
		if !keep(i) {
			continue
		}
		if len(idx) == size {
			return idx, base64.RawURLEncoding.EncodeToString([]byte("dbfake:" + strconv.Itoa(i))), nil
		}
		idx = append(idx, i)
	}
	return idx, "", nil
}

func queryInt(c *call, name string) (int, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badRequest("INVALID_PARAMETER_VALUE", "%s must be a non-negative integer, got %q", name, v)
	}
	return n, nil
}

// --- clusters ----------------------------------------------------------------------------------

func (s *Server) listClusters(c *call) (any, error) {
	q := c.r.URL.Query()
	states := map[compute.State]bool{}
	for _, v := range q["filter_by.cluster_states"] {
		var st compute.State
		if err := st.Set(v); err != nil {
			return nil, badRequest("INVALID_PARAMETER_VALUE", "filter_by.cluster_states: %v", err)
		}
		states[st] = true
	}
	sources := map[compute.ClusterSource]bool{}
	for _, v := range q["filter_by.cluster_sources"] {
		var src compute.ClusterSource
		if err := src.Set(v); err != nil {
			return nil, badRequest("INVALID_PARAMETER_VALUE", "filter_by.cluster_sources: %v", err)
		}
		sources[src] = true
	}
	if q.Get("filter_by.is_pinned") == "true" {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "dbfake: filter_by.is_pinned is not modelled")
	}
	policy := q.Get("filter_by.policy_id")
	size, err := queryInt(c, "page_size")
	if err != nil {
		return nil, err
	}
	all := s.computeOf(c.wsID).clusters.all()
	idx, next, err := s.paginate(len(all), q.Get("page_token"), size, func(i int) bool {
		d := all[i].d
		return (len(states) == 0 || states[d.State]) &&
			(len(sources) == 0 || sources[d.ClusterSource]) &&
			(policy == "" || d.PolicyId == policy)
	})
	if err != nil {
		return nil, err
	}
	resp := compute.ListClustersResponse{Clusters: []compute.ClusterDetails{}, NextPageToken: next}
	for _, i := range idx {
		resp.Clusters = append(resp.Clusters, all[i].d)
	}
	return resp, nil
}

func clusterMissing(id string) error {
	// The real service answers 400, not 404; the SDK maps this exact shape to ErrResourceDoesNotExist.
	return badRequest("INVALID_PARAMETER_VALUE", "Cluster %s does not exist", id)
}

func (s *Server) clusterByID(c *call, id string) (*clusterRec, error) {
	if id == "" {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "Missing required field: cluster_id")
	}
	rec := s.computeOf(c.wsID).clusters.get(id)
	if rec == nil {
		return nil, clusterMissing(id)
	}
	return rec, nil
}

func (s *Server) getCluster(c *call) (any, error) {
	rec, err := s.clusterByID(c, c.r.URL.Query().Get("cluster_id"))
	if err != nil {
		return nil, err
	}
	return rec.d, nil
}

func (s *Server) deleteCluster(c *call) (any, error) {
	var req compute.DeleteCluster
	if err := decodeBody(c, &req); err != nil {
		return nil, err
	}
	rec, err := s.clusterByID(c, req.ClusterId)
	if err != nil {
		return nil, err
	}
	s.terminateCluster(rec, c.now)
	return nil, nil
}

// terminateCluster is idempotent: "If the cluster is already in a TERMINATING or TERMINATED
// state, nothing will happen."
func (s *Server) terminateCluster(rec *clusterRec, now time.Time) {
	if rec.d.State == compute.StateTerminating || rec.d.State == compute.StateTerminated {
		return
	}
	rec.tl.reset()
	rec.d.State = compute.StateTerminating
	rec.d.StateMessage = ""
	terminated := now.Add(s.delay(clusterTerminate))
	defer s.userRestartsCluster(rec, terminated)
	rec.tl.schedule(terminated, func(at time.Time) {
		rec.d.State = compute.StateTerminated
		rec.d.StateMessage = ""
		rec.d.TerminatedTime = millis(at)
		rec.d.TerminationReason = &compute.TerminationReason{
			Code:       compute.TerminationReasonCodeUserRequest,
			Type:       compute.TerminationReasonTypeSuccess,
			Parameters: map[string]string{"username": "dbfake"},
		}
	})
}

func (s *Server) startClusterCall(c *call) (any, error) {
	var req compute.StartCluster
	if err := decodeBody(c, &req); err != nil {
		return nil, err
	}
	rec, err := s.clusterByID(c, req.ClusterId)
	if err != nil {
		return nil, err
	}
	if rec.d.ClusterSource == compute.ClusterSourceJob {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "Cannot start a job cluster")
	}
	if rec.d.State != compute.StateTerminated {
		return nil, badRequest("INVALID_STATE", "Cluster %s is in unexpected state %s.", rec.d.ClusterId, rec.d.State)
	}
	s.revertIfScripted(c.wsID, c.now)
	s.startCluster(rec, c.now, s.computeOf(c.wsID).failStart[rec.d.ClusterId])
	return nil, nil
}

// startCluster moves a TERMINATED cluster to PENDING, then to RUNNING, or back to TERMINATED
// with a CLIENT_ERROR reason when failReason is set.
func (s *Server) startCluster(rec *clusterRec, now time.Time, failReason string) {
	rec.tl.reset()
	rec.d.State = compute.StatePending
	rec.d.StateMessage = "Finding instances for new nodes, acquiring more instances if necessary"
	rec.d.TerminationReason = nil
	rec.d.TerminatedTime = 0
	rec.tl.schedule(now.Add(s.delay(clusterStart)), func(at time.Time) {
		if failReason != "" {
			rec.d.State = compute.StateTerminated
			rec.d.StateMessage = failReason
			rec.d.TerminatedTime = millis(at)
			rec.d.TerminationReason = &compute.TerminationReason{
				Code:       compute.TerminationReasonCodeCloudProviderLaunchFailure,
				Type:       compute.TerminationReasonTypeClientError,
				Parameters: map[string]string{"databricks_error_message": failReason},
			}
			return
		}
		rec.d.State = compute.StateRunning
		rec.d.StateMessage = ""
		rec.d.StartTime = millis(at)
		rec.d.LastRestartedTime = millis(at)
	})
}

// --- instance pools ----------------------------------------------------------------------------

func (wc *workspaceCompute) poolStats(p *poolRec) compute.InstancePoolStats {
	st := compute.InstancePoolStats{IdleCount: p.idle, PendingIdleCount: p.pendingIdle}
	for _, c := range wc.clusters.all() {
		if c.d.State == compute.StateTerminated {
			continue
		}
		if c.d.InstancePoolId == p.p.InstancePoolId || c.d.DriverInstancePoolId == p.p.InstancePoolId {
			st.UsedCount++
		}
	}
	return st
}

func (wc *workspaceCompute) renderPool(p *poolRec) compute.InstancePoolAndStats {
	out := p.p
	st := wc.poolStats(p)
	out.Stats = &st
	return out
}

func (s *Server) listPools(c *call) (any, error) {
	wc := s.computeOf(c.wsID)
	resp := compute.ListInstancePools{InstancePools: []compute.InstancePoolAndStats{}}
	for _, p := range wc.pools.all() {
		resp.InstancePools = append(resp.InstancePools, wc.renderPool(p))
	}
	return resp, nil
}

func poolMissing(id string) error {
	return notFound("Can't find an instance pool with id: %s.", id)
}

func (s *Server) getPool(c *call) (any, error) {
	id := c.r.URL.Query().Get("instance_pool_id")
	if id == "" {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "Missing required field: instance_pool_id")
	}
	wc := s.computeOf(c.wsID)
	p := wc.pools.get(id)
	if p == nil {
		return nil, poolMissing(id)
	}
	return reshape[compute.GetInstancePool](wc.renderPool(p))
}

// editPool treats edit as a full replace of the editable fields: an omitted optional field is
// reset to its zero value. Callers must re-send what they want to keep.
func (s *Server) editPool(c *call) (any, error) {
	var req compute.EditInstancePool
	if err := decodeBody(c, &req); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, value string }{
		{"instance_pool_id", req.InstancePoolId},
		{"instance_pool_name", req.InstancePoolName},
		{"node_type_id", req.NodeTypeId},
	} {
		if f.value == "" {
			return nil, badRequest("INVALID_PARAMETER_VALUE", "Missing required field: %s", f.name)
		}
	}
	p := s.computeOf(c.wsID).pools.get(req.InstancePoolId)
	if p == nil {
		return nil, poolMissing(req.InstancePoolId)
	}
	if p.p.State == compute.InstancePoolStateDeleted {
		return nil, badRequest("INVALID_STATE", "Instance pool %s is deleted", req.InstancePoolId)
	}
	if req.NodeTypeId != p.p.NodeTypeId {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "node_type_id cannot be changed")
	}
	if req.MinIdleInstances < 0 || req.MaxCapacity < 0 || req.IdleInstanceAutoterminationMinutes < 0 ||
		req.IdleInstanceAutoterminationMinutes > 10000 {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "min_idle_instances, max_capacity and idle_instance_autotermination_minutes must be within range")
	}
	if req.MaxCapacity > 0 && req.MinIdleInstances > req.MaxCapacity {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "min_idle_instances (%d) must not exceed max_capacity (%d)",
			req.MinIdleInstances, req.MaxCapacity)
	}
	p.p.InstancePoolName = req.InstancePoolName
	p.p.CustomTags = cloneMap(req.CustomTags)
	p.p.IdleInstanceAutoterminationMinutes = req.IdleInstanceAutoterminationMinutes
	p.p.MaxCapacity = req.MaxCapacity
	p.p.MinIdleInstances = req.MinIdleInstances
	p.p.RemoteDiskThroughput = req.RemoteDiskThroughput
	p.p.TotalInitialRemoteDiskSize = req.TotalInitialRemoteDiskSize
	// The SDK lists every field the request carried in ForceSendFields; a field left out is unset
	// (Databricks' default) and is absent from later GET and list answers, as a zero sent is present.
	p.p.ForceSendFields = presentPoolFields(req.ForceSendFields)
	s.setIdleTarget(p, req.MinIdleInstances, c.now)
	return nil, nil
}

// optionalPoolFields are the pool fields the real API leaves out of its answers when unset, where 0
// would mean something else (idle_instance_autotermination_minutes 0 removes idle instances at once).
var optionalPoolFields = []string{"MinIdleInstances", "IdleInstanceAutoterminationMinutes", "MaxCapacity",
	"RemoteDiskThroughput", "TotalInitialRemoteDiskSize"}

// presentPoolFields keeps the optional pool fields among those a request or seed carried, so that a
// zero that was set is sent back and an unset field is not.
func presentPoolFields(carried []string) []string {
	var out []string
	for _, f := range optionalPoolFields {
		if slices.Contains(carried, f) {
			out = append(out, f)
		}
	}
	return out
}

// setIdleTarget makes the idle instance count follow min_idle_instances after TransitionDelay,
// with the instances still to be acquired shown as pending_idle_count meanwhile.
func (s *Server) setIdleTarget(p *poolRec, target int, now time.Time) {
	p.tl.reset()
	p.pendingIdle = 0
	if target == p.idle {
		return
	}
	if target > p.idle {
		p.pendingIdle = target - p.idle
	}
	p.tl.schedule(now.Add(s.delay(poolFill)), func(time.Time) {
		p.idle = target
		p.pendingIdle = 0
	})
}

// --- SQL warehouses ----------------------------------------------------------------------------

func (s *Server) listWarehouses(c *call) (any, error) {
	size, err := queryInt(c, "page_size")
	if err != nil {
		return nil, err
	}
	all := s.computeOf(c.wsID).warehouses.all()
	idx, next, err := s.paginate(len(all), c.r.URL.Query().Get("page_token"), size, func(int) bool { return true })
	if err != nil {
		return nil, err
	}
	resp := sql.ListWarehousesResponse{Warehouses: []sql.EndpointInfo{}, NextPageToken: next}
	for _, i := range idx {
		resp.Warehouses = append(resp.Warehouses, all[i].w)
	}
	return resp, nil
}

func (s *Server) warehouseByID(c *call) (*warehouseRec, error) {
	w := s.computeOf(c.wsID).warehouses.get(c.params[0])
	if w == nil {
		return nil, notFound("Unable to find warehouse %s", c.params[0])
	}
	return w, nil
}

func (s *Server) getWarehouse(c *call) (any, error) {
	w, err := s.warehouseByID(c)
	if err != nil {
		return nil, err
	}
	return reshape[sql.GetWarehouseResponse](w.w)
}

func (s *Server) stopWarehouse(c *call) (any, error) {
	w, err := s.warehouseByID(c)
	if err != nil {
		return nil, err
	}
	switch w.w.State {
	case sql.StateStopped, sql.StateStopping:
		return nil, nil
	case sql.StateDeleted, sql.StateDeleting:
		return nil, badRequest("INVALID_STATE", "Warehouse %s is %s", w.w.Id, w.w.State)
	}
	w.tl.reset()
	w.w.State = sql.StateStopping
	stopped := c.now.Add(s.delay(warehouseStop))
	w.tl.schedule(stopped, func(time.Time) {
		w.w.State = sql.StateStopped
		w.w.NumClusters = 0
		w.w.NumActiveSessions = 0
	})
	s.userResumesWarehouse(w, stopped)
	return nil, nil
}

func (s *Server) startWarehouse(c *call) (any, error) {
	w, err := s.warehouseByID(c)
	if err != nil {
		return nil, err
	}
	switch w.w.State {
	case sql.StateRunning, sql.StateStarting:
		return nil, nil
	case sql.StateDeleted, sql.StateDeleting:
		return nil, badRequest("INVALID_STATE", "Warehouse %s is %s", w.w.Id, w.w.State)
	}
	s.revertIfScripted(c.wsID, c.now)
	s.resumeWarehouse(w, c.now)
	return nil, nil
}

func (s *Server) resumeWarehouse(w *warehouseRec, now time.Time) {
	w.tl.reset()
	w.w.State = sql.StateStarting
	w.tl.schedule(now.Add(s.delay(warehouseStart)), func(time.Time) {
		w.w.State = sql.StateRunning
		w.w.NumClusters = max(1, w.w.MinNumClusters)
	})
}

// --- pipelines ---------------------------------------------------------------------------------

func (p *pipelineRec) stateInfo() pipelines.PipelineStateInfo {
	return pipelines.PipelineStateInfo{
		ClusterId:       p.clusterID,
		CreatorUserName: p.creator,
		LatestUpdates:   append([]pipelines.UpdateStateInfo(nil), p.updates...),
		Name:            p.name,
		PipelineId:      p.id,
		State:           p.state,
	}
}

func (p *pipelineRec) details() pipelines.GetPipelineResponse {
	return pipelines.GetPipelineResponse{
		ClusterId:       p.clusterID,
		CreatorUserName: p.creator,
		LastModified:    p.lastModified,
		LatestUpdates:   append([]pipelines.UpdateStateInfo(nil), p.updates...),
		Name:            p.name,
		PipelineId:      p.id,
		State:           p.state,
		Spec:            &pipelines.PipelineSpec{Id: p.id, Name: p.name, Continuous: p.continuous},
	}
}

// The pipelines list's page sizes (ListPipelinesRequest.MaxResults: default 25, at most 100).
const (
	defaultPipelinesPage = 25
	maxPipelinesPage     = 100
)

func (s *Server) listPipelines(c *call) (any, error) {
	q := c.r.URL.Query()
	if q.Get("filter") != "" {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "dbfake: the pipelines list filter is not modelled")
	}
	size, err := queryInt(c, "max_results")
	if err != nil {
		return nil, err
	}
	// Unlike the other lists, pipelines page at 25 by default and refuse more than 100 a page
	// (ListPipelinesRequest.MaxResults), so a caller that sends nothing reads four times the pages.
	switch {
	case size > maxPipelinesPage:
		return nil, badRequest("INVALID_PARAMETER_VALUE", "max_results must be at most %d, got %d", maxPipelinesPage, size)
	case size <= 0:
		size = defaultPipelinesPage
	}
	all := s.computeOf(c.wsID).pipelines.all()
	idx, next, err := s.paginate(len(all), q.Get("page_token"), size, func(int) bool { return true })
	if err != nil {
		return nil, err
	}
	resp := pipelines.ListPipelinesResponse{Statuses: []pipelines.PipelineStateInfo{}, NextPageToken: next}
	for _, i := range idx {
		resp.Statuses = append(resp.Statuses, all[i].stateInfo())
	}
	return resp, nil
}

func (s *Server) pipelineByID(c *call) (*pipelineRec, error) {
	p := s.computeOf(c.wsID).pipelines.get(c.params[0])
	if p == nil {
		return nil, notFound("The specified pipeline %s was not found.", c.params[0])
	}
	return p, nil
}

func (s *Server) getPipeline(c *call) (any, error) {
	p, err := s.pipelineByID(c)
	if err != nil {
		return nil, err
	}
	return p.details(), nil
}

func (s *Server) stopPipeline(c *call) (any, error) {
	p, err := s.pipelineByID(c)
	if err != nil {
		return nil, err
	}
	if !pipelineActive(p.state) || p.state == pipelines.PipelineStateStopping {
		return nil, nil
	}
	p.tl.reset()
	p.state = pipelines.PipelineStateStopping
	setLatestUpdate(p, pipelines.UpdateStateInfoStateStopping)
	if cl := s.computeOf(c.wsID).clusters.get(p.clusterID); cl != nil {
		s.terminateCluster(cl, c.now)
	}
	p.tl.schedule(c.now.Add(s.delay(pipelineStop)), func(time.Time) {
		p.state = pipelines.PipelineStateIdle
		setLatestUpdate(p, pipelines.UpdateStateInfoStateCanceled)
	})
	return nil, nil
}

func (s *Server) startPipelineUpdate(c *call) (any, error) {
	p, err := s.pipelineByID(c)
	if err != nil {
		return nil, err
	}
	switch {
	case p.state == pipelines.PipelineStateDeleted:
		return nil, badRequest("INVALID_STATE", "Pipeline %s is deleted", p.id)
	case pipelineActive(p.state):
		return nil, &apiError{status: http.StatusConflict, code: "RESOURCE_CONFLICT",
			message: fmt.Sprintf("An active update already exists for pipeline %s", p.id)}
	}
	id := newUUID()
	p.tl.reset()
	p.state = pipelines.PipelineStateStarting
	p.updates = append([]pipelines.UpdateStateInfo{{
		UpdateId:     id,
		State:        pipelines.UpdateStateInfoStateInitializing,
		CreationTime: c.now.UTC().Format("2006-01-02T15:04:05.000Z"),
	}}, p.updates...)
	if cl := s.computeOf(c.wsID).clusters.get(p.clusterID); cl != nil && cl.d.State == compute.StateTerminated {
		s.startCluster(cl, c.now, "")
	}
	p.tl.schedule(c.now.Add(s.delay(pipelineStart)), func(time.Time) {
		p.state = pipelines.PipelineStateRunning
		setLatestUpdate(p, pipelines.UpdateStateInfoStateRunning)
	})
	return pipelines.StartUpdateResponse{UpdateId: id}, nil
}

func setLatestUpdate(p *pipelineRec, st pipelines.UpdateStateInfoState) {
	if len(p.updates) == 0 {
		return
	}
	p.updates = append([]pipelines.UpdateStateInfo(nil), p.updates...)
	p.updates[0].State = st
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
