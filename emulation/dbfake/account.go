package dbfake

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/databricks/databricks-sdk-go/service/provisioning"
)

// PatchBehaviour scripts how an accepted workspace PATCH plays out, to reproduce the documented
// ways a real update lands (or does not). It applies to every later PATCH of the workspace until
// changed. The update takes max(Options.WorkspaceUpdateDelay, ProvisioningFor) to land.
type PatchBehaviour struct {
	// ProvisioningFor keeps the workspace PROVISIONING for this long after the PATCH, as on a
	// Databricks-managed VPC; 0 keeps it RUNNING throughout, as on a customer-managed VPC.
	ProvisioningFor time.Duration
	// SilentRevert shows the new values from the PATCH until the update delay ends, then the old
	// ones again with status RUNNING ("the workspace might revert silently to its original
	// configuration").
	SilentRevert bool
	// EndIn, when set to a status other than RUNNING (FAILED, say), is the status the workspace
	// ends in after the delay, with a status message and the old values.
	EndIn provisioning.WorkspaceStatus
	// StuckProvisioning leaves the workspace PROVISIONING with the old values forever.
	StuckProvisioning bool
	// Rollback ends the update RUNNING on the old values without ever showing the new ones: after
	// a PROVISIONING phase, the workspace is back on its previous key configuration.
	Rollback bool
	// RevertAtFirstStart lets the update land as usual, then puts the old values back (RUNNING) at
	// the first compute start in the workspace after the PATCH: a revert that lands after the check
	// saw the new key and before the look that follows the restart, whatever the machine's speed.
	RevertAtFirstStart bool
}

// WorkspaceUpdateSpan is one accepted workspace PATCH as the fake played it, on the fake's clock:
// tests hold other calls (a cluster start, say) against the time the workspace was PROVISIONING.
type WorkspaceUpdateSpan struct {
	WorkspaceID int64
	Accepted    time.Time
	// ProvisioningUntil is when the workspace stops showing PROVISIONING; zero when it never
	// showed it, and the zero time too for a StuckProvisioning update (see Stuck).
	ProvisioningUntil time.Time
	// Landed is when the update's outcome shows (Options.WorkspaceUpdateDelay or a realistic draw,
	// at least ProvisioningFor); zero for a StuckProvisioning update, which never lands.
	Landed time.Time
	Stuck  bool
}

// Provisioning reports whether the workspace showed PROVISIONING at t because of this update.
func (u WorkspaceUpdateSpan) Provisioning(t time.Time) bool {
	if t.Before(u.Accepted) {
		return false
	}
	return u.Stuck || t.Before(u.ProvisioningUntil)
}

// WorkspaceUpdates returns every accepted workspace PATCH, oldest first.
func (s *Server) WorkspaceUpdates() []WorkspaceUpdateSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]WorkspaceUpdateSpan(nil), s.updateLog...)
}

// SetPatchBehaviour scripts later PATCHes of a workspace. The zero value restores the default.
func (s *Server) SetPatchBehaviour(workspaceID int64, b PatchBehaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviours[workspaceID] = b
}

type workspaceRec struct {
	ws  provisioning.Workspace
	upd *workspaceUpdate
}

// workspaceUpdate is an accepted PATCH that has not landed yet.
type workspaceUpdate struct {
	at            time.Time
	before, after provisioning.Workspace
	changes       map[string]json.RawMessage
	behaviour     PatchBehaviour
	delay         time.Duration
}

const (
	msgRunning      = "Workspace is running."
	msgProvisioning = "Workspace resources are being set up."
)

// view is the workspace as a GET at now sees it. Once the update's time has passed it is folded
// into the record, so later reads are cheap.
func (r *workspaceRec) view(now time.Time) provisioning.Workspace {
	u := r.upd
	if u == nil {
		return r.ws
	}
	if u.behaviour.StuckProvisioning {
		return withStatus(u.before, provisioning.WorkspaceStatusProvisioning, msgProvisioning)
	}
	elapsed := now.Sub(u.at)
	if elapsed < u.delay {
		v := u.before
		if u.behaviour.SilentRevert {
			v = u.after
		}
		if elapsed < u.behaviour.ProvisioningFor {
			return withStatus(v, provisioning.WorkspaceStatusProvisioning, msgProvisioning)
		}
		return withStatus(v, provisioning.WorkspaceStatusRunning, msgRunning)
	}
	r.ws = u.final()
	r.upd = nil
	return r.ws
}

func (u *workspaceUpdate) final() provisioning.Workspace {
	b := u.behaviour
	switch {
	case b.SilentRevert, b.Rollback:
		return withStatus(u.before, provisioning.WorkspaceStatusRunning, msgRunning)
	case b.EndIn != "" && b.EndIn != provisioning.WorkspaceStatusRunning:
		return withStatus(u.before, b.EndIn,
			"Workspace update failed: the new configuration could not be applied (dbfake PatchBehaviour.EndIn).")
	default:
		return withStatus(u.after, provisioning.WorkspaceStatusRunning, msgRunning)
	}
}

// accepted is the PATCH response: the requested values, with the status at the moment of the call.
func (u *workspaceUpdate) accepted() provisioning.Workspace {
	if u.behaviour.StuckProvisioning || u.behaviour.ProvisioningFor > 0 {
		return withStatus(u.after, provisioning.WorkspaceStatusProvisioning, msgProvisioning)
	}
	return withStatus(u.after, provisioning.WorkspaceStatusRunning, msgRunning)
}

func withStatus(ws provisioning.Workspace, st provisioning.WorkspaceStatus, msg string) provisioning.Workspace {
	ws.WorkspaceStatus = st
	ws.WorkspaceStatusMessage = msg
	return ws
}

// revertIfScripted plays PatchBehaviour.RevertAtFirstStart: called by every compute start.
func (s *Server) revertIfScripted(workspaceID int64, now time.Time) {
	before, ok := s.revertAtStart[workspaceID]
	r := s.workspaceRec(workspaceID)
	if !ok || r == nil {
		return
	}
	delete(s.revertAtStart, workspaceID)
	r.view(now)
	r.upd = nil
	r.ws = withStatus(before, provisioning.WorkspaceStatusRunning, msgRunning)
	s.log.Info("dbfake: workspace update reverted silently", "workspace_id", workspaceID)
}

func (s *Server) workspaceRec(id int64) *workspaceRec {
	return s.workspaces.get(strconv.FormatInt(id, 10))
}

// --- customer-managed-keys ---------------------------------------------------------------------

// kmsKeyARN is arn:<partition>:kms:<region>:<12-digit account>:key/<key id or mrk- id>.
var kmsKeyARN = regexp.MustCompile(`^arn:(aws(?:-[a-z]+)*):kms:([a-z]{2}(?:-[a-z]+)+-\d+):(\d{12}):key/([A-Za-z0-9-]+)$`)
var iamRoleARN = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]+$`)

func validUseCase(uc provisioning.KeyUseCase) bool {
	return uc == provisioning.KeyUseCaseManagedServices || uc == provisioning.KeyUseCaseStorage
}

func (s *Server) createKeyConfig(c *call) (any, error) {
	var req provisioning.CreateCustomerManagedKeyRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		return nil, badRequest("MALFORMED_REQUEST", "Could not parse request body: %v", err)
	}
	// The SDK drops reuse_key_for_cluster_volumes=false unless ForceSendFields says otherwise, and
	// the service reads absence as true, so absence must be told apart from false.
	var raw struct {
		AwsKeyInfo map[string]json.RawMessage `json:"aws_key_info"`
	}
	_ = json.Unmarshal(c.body, &raw)

	if len(req.UseCases) == 0 {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "use_cases must contain at least one of MANAGED_SERVICES, STORAGE")
	}
	for _, uc := range req.UseCases {
		if !validUseCase(uc) {
			return nil, badRequest("INVALID_PARAMETER_VALUE", "Invalid use case %q: expected MANAGED_SERVICES or STORAGE", string(uc))
		}
	}
	if req.GcpKeyInfo != nil || req.AzureKeyInfo != nil {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "Only aws_key_info is supported for an AWS account")
	}
	if req.AwsKeyInfo == nil {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "aws_key_info is required")
	}
	m := kmsKeyARN.FindStringSubmatch(req.AwsKeyInfo.KeyArn)
	if m == nil {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "Invalid AWS KMS key ARN: %q", req.AwsKeyInfo.KeyArn)
	}
	region := m[2]
	if req.AwsKeyInfo.KeyRegion != "" && req.AwsKeyInfo.KeyRegion != region {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "key_region %s does not match the region %s of the key ARN",
			req.AwsKeyInfo.KeyRegion, region)
	}
	reuse := slices.Contains(req.UseCases, provisioning.KeyUseCaseStorage)
	if v, ok := raw.AwsKeyInfo["reuse_key_for_cluster_volumes"]; ok {
		if err := json.Unmarshal(v, &reuse); err != nil {
			return nil, badRequest("INVALID_PARAMETER_VALUE", "reuse_key_for_cluster_volumes must be a boolean")
		}
	}
	k := provisioning.CustomerManagedKey{
		AccountId: s.opts.AccountID,
		AwsKeyInfo: &provisioning.AwsKeyInfo{
			KeyAlias:                  req.AwsKeyInfo.KeyAlias,
			KeyArn:                    req.AwsKeyInfo.KeyArn,
			KeyRegion:                 region,
			ReuseKeyForClusterVolumes: reuse,
		},
		CreationTime:         millis(c.now),
		CustomerManagedKeyId: newUUID(),
		UseCases:             slices.Clone(req.UseCases),
	}
	s.keys.put(k.CustomerManagedKeyId, &k)
	return k, nil
}

func (s *Server) listKeyConfigs(*call) (any, error) {
	out := []provisioning.CustomerManagedKey{}
	for _, k := range s.keys.all() {
		out = append(out, *k)
	}
	return out, nil
}

func (s *Server) listCredentials(*call) (any, error) {
	out := []provisioning.Credential{}
	for _, c := range s.credentials.all() {
		out = append(out, *c)
	}
	return out, nil
}

func (s *Server) getCredential(c *call) (any, error) {
	cred := s.credentials.get(c.params[1])
	if cred == nil {
		return nil, notFound("Credential configuration %s does not exist", c.params[1])
	}
	return *cred, nil
}

func (s *Server) getKeyConfig(c *call) (any, error) {
	k := s.keys.get(c.params[1])
	if k == nil {
		return nil, notFound("Customer managed key configuration %s does not exist", c.params[1])
	}
	return *k, nil
}

func (s *Server) deleteKeyConfig(c *call) (any, error) {
	id := c.params[1]
	k := s.keys.get(id)
	if k == nil {
		return nil, notFound("Customer managed key configuration %s does not exist", id)
	}
	if ws, ok := s.keyInUse(id, c.now); ok {
		return nil, badRequest("INVALID_STATE",
			"Customer managed key configuration %s is used by workspace %d and cannot be deleted", id, ws)
	}
	s.keys.remove(id)
	return *k, nil
}

// keyInUse counts an update in flight as use: deleting the key under it would fail the update.
func (s *Server) keyInUse(id string, now time.Time) (int64, bool) {
	for _, r := range s.workspaces.all() {
		views := []provisioning.Workspace{r.view(now)}
		if r.upd != nil {
			views = append(views, r.upd.before, r.upd.after)
		}
		for _, v := range views {
			if v.ManagedServicesCustomerManagedKeyId == id || v.StorageCustomerManagedKeyId == id {
				return v.WorkspaceId, true
			}
		}
	}
	return 0, false
}

// --- workspaces --------------------------------------------------------------------------------

func (s *Server) listWorkspaces(c *call) (any, error) {
	out := []provisioning.Workspace{}
	for _, r := range s.workspaces.all() {
		out = append(out, r.view(c.now))
	}
	return out, nil
}

func (s *Server) pathWorkspace(c *call) (*workspaceRec, error) {
	id, err := strconv.ParseInt(c.params[1], 10, 64)
	if err != nil {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "Invalid workspace id %q", c.params[1])
	}
	r := s.workspaceRec(id)
	if r == nil {
		return nil, notFound("Workspace %d does not exist", id)
	}
	return r, nil
}

func (s *Server) getWorkspace(c *call) (any, error) {
	r, err := s.pathWorkspace(c)
	if err != nil {
		return nil, err
	}
	return r.view(c.now), nil
}

// updatableWorkspaceFields are the fields the update-workspace API documents for AWS.
var updatableWorkspaceFields = map[string]bool{
	"credentials_id": true,
	"network_id":     true,
	"managed_services_customer_managed_key_id": true,
	"storage_customer_managed_key_id":          true,
	"private_access_settings_id":               true,
	"custom_tags":                              true,
	"network_connectivity_config_id":           true,
	"expected_workspace_status":                true,
}

var workspaceJSONFields = jsonFieldNames(reflect.TypeOf(provisioning.Workspace{}))

const computeRunningMessage = "Please terminate all pool & cluster EC2 instances in your workspace subnets before attempting to update the workspace."

func (s *Server) patchWorkspace(c *call) (any, error) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(c.body, &body); err != nil || body == nil {
		return nil, badRequest("MALFORMED_REQUEST", "The request body must be a JSON object (the Workspace)")
	}
	r, err := s.pathWorkspace(c)
	if err != nil {
		return nil, err
	}
	current := r.view(c.now)
	// Both refusals are INVALID_STATE, as on the real service; only the compute one's wording is
	// documented (terraform-provider-databricks #4491). A client must tell them apart by reading
	// the workspace, not by this message.
	if current.WorkspaceStatus != provisioning.WorkspaceStatusRunning {
		return nil, badRequest("INVALID_STATE", "Workspace %d is %s; only a RUNNING workspace can be updated",
			current.WorkspaceId, current.WorkspaceStatus)
	}
	changes, err := workspaceChanges(current, body, c.r.URL.Query().Get("update_mask"))
	if err != nil {
		return nil, err
	}
	after, err := overlayWorkspace(current, changes)
	if err != nil {
		return nil, err
	}
	if err := s.checkKeyFields(current, after, changes); err != nil {
		return nil, err
	}
	if running := s.runningCompute(current.WorkspaceId, c.now); len(running) > 0 {
		s.log.Info("dbfake: workspace update refused, classic compute running",
			"workspace_id", current.WorkspaceId, "running", running)
		return nil, badRequest("INVALID_STATE", computeRunningMessage)
	}

	if u := r.upd; u != nil {
		// Still RUNNING but not landed yet (customer-managed VPC). The same request again is a
		// harmless retry; a different one would race the first.
		if sameChanges(u.changes, changes) {
			return u.accepted(), nil
		}
		return nil, badRequest("INVALID_STATE", "Workspace %d has an update in progress", current.WorkspaceId)
	}

	b := s.behaviours[current.WorkspaceId]
	u := &workspaceUpdate{
		at:        c.now,
		before:    current,
		after:     after,
		changes:   changes,
		behaviour: b,
		delay:     max(s.delay(workspaceUpdateTime), b.ProvisioningFor),
	}
	r.upd = u
	if b.RevertAtFirstStart {
		s.revertAtStart[current.WorkspaceId] = current
	}
	span := WorkspaceUpdateSpan{WorkspaceID: current.WorkspaceId, Accepted: c.now, Stuck: b.StuckProvisioning}
	if b.ProvisioningFor > 0 && !b.StuckProvisioning {
		span.ProvisioningUntil = c.now.Add(b.ProvisioningFor)
	}
	if !b.StuckProvisioning {
		span.Landed = c.now.Add(u.delay)
	}
	s.updateLog = append(s.updateLog, span)
	resp := u.accepted()
	r.view(c.now) // lands at once when there is no delay
	s.log.Info("dbfake: workspace update accepted", "workspace_id", current.WorkspaceId,
		"fields", sortedKeys(changes), "delay", u.delay)
	return resp, nil
}

// workspaceChanges picks the fields a PATCH changes: those named in update_mask, or with no mask
// (AWS ignores it) every field in the body. A masked field missing from the body is cleared.
// Read-only fields are tolerated when they repeat the current value and refused otherwise.
func workspaceChanges(current provisioning.Workspace, body map[string]json.RawMessage, mask string) (map[string]json.RawMessage, error) {
	var names []string
	if mask == "" || mask == "*" {
		for k := range body {
			names = append(names, k)
		}
	} else {
		for _, n := range strings.Split(mask, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	currentJSON, _ := json.Marshal(current)
	var currentFields map[string]json.RawMessage
	_ = json.Unmarshal(currentJSON, &currentFields)

	changes := map[string]json.RawMessage{}
	for _, n := range names {
		if !workspaceJSONFields[n] {
			return nil, badRequest("INVALID_PARAMETER_VALUE", "Unknown workspace field %q", n)
		}
		v := body[n]
		if !updatableWorkspaceFields[n] {
			if jsonEqual(v, currentFields[n]) {
				continue
			}
			return nil, badRequest("INVALID_PARAMETER_VALUE", "Field %s cannot be updated", n)
		}
		changes[n] = v
	}
	if len(changes) == 0 {
		return nil, badRequest("INVALID_PARAMETER_VALUE", "The request does not change any updatable field")
	}
	return changes, nil
}

func overlayWorkspace(ws provisioning.Workspace, changes map[string]json.RawMessage) (provisioning.Workspace, error) {
	b, err := json.Marshal(ws)
	if err != nil {
		return ws, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return ws, err
	}
	for k, v := range changes {
		if len(v) == 0 || string(v) == "null" {
			delete(fields, k)
		} else {
			fields[k] = v
		}
	}
	b, err = json.Marshal(fields)
	if err != nil {
		return ws, err
	}
	var out provisioning.Workspace
	if err := json.Unmarshal(b, &out); err != nil {
		return ws, badRequest("INVALID_PARAMETER_VALUE", "Invalid workspace field value: %v", err)
	}
	// The SDK unmarshaller lists every present field in ForceSendFields; state carries none.
	out.ForceSendFields = nil
	return out, nil
}

func (s *Server) checkKeyFields(before, after provisioning.Workspace, changes map[string]json.RawMessage) error {
	type keyField struct {
		name    string
		useCase provisioning.KeyUseCase
		old     string
		new     string
	}
	fields := []keyField{
		{"managed_services_customer_managed_key_id", provisioning.KeyUseCaseManagedServices,
			before.ManagedServicesCustomerManagedKeyId, after.ManagedServicesCustomerManagedKeyId},
		{"storage_customer_managed_key_id", provisioning.KeyUseCaseStorage,
			before.StorageCustomerManagedKeyId, after.StorageCustomerManagedKeyId},
	}
	for _, f := range fields {
		if _, ok := changes[f.name]; !ok {
			continue
		}
		k := s.keys.get(f.new)
		if k == nil {
			return badRequest("INVALID_PARAMETER_VALUE", "Invalid customerManagedKeyId")
		}
		if !slices.Contains(k.UseCases, f.useCase) {
			return badRequest("INVALID_PARAMETER_VALUE",
				"Customer managed key configuration %s does not have the %s use case required by %s", f.new, f.useCase, f.name)
		}
		if k.AwsKeyInfo != nil && before.AwsRegion != "" && k.AwsKeyInfo.KeyRegion != before.AwsRegion {
			return badRequest("INVALID_PARAMETER_VALUE",
				"The KMS key of configuration %s is in %s, but the workspace is in %s", f.new, k.AwsKeyInfo.KeyRegion, before.AwsRegion)
		}
	}
	if _, ok := changes["storage_customer_managed_key_id"]; ok {
		if old := before.StorageCustomerManagedKeyId; old != "" && old != after.StorageCustomerManagedKeyId {
			return badRequest("INVALID_PARAMETER_VALUE", "You cannot replace an existing key configuration for workspace storage")
		}
	}
	return nil
}

func sameChanges(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !jsonEqual(v, w) {
			return false
		}
	}
	return true
}

// jsonEqual compares two JSON values by meaning; absent, null and the zero value are equal
// because the SDK omits zero values.
func jsonEqual(a, b json.RawMessage) bool {
	return reflect.DeepEqual(decodeLoose(a), decodeLoose(b))
}

func decodeLoose(v json.RawMessage) any {
	if len(v) == 0 {
		return nil
	}
	var out any
	if err := json.Unmarshal(v, &out); err != nil {
		return string(v)
	}
	switch x := out.(type) {
	case string:
		if x == "" {
			return nil
		}
	case float64:
		if x == 0 {
			return nil
		}
	case bool:
		if !x {
			return nil
		}
	case map[string]any:
		if len(x) == 0 {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
	}
	return out
}

func jsonFieldNames(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
