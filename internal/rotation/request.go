package rotation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

var workspaceIDPattern = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

// MaxWorkspacesPerRequest bounds one request. Each workspace rotates in its own child execution,
// but the request's execution still carries every workspace once in its state (its target, then its
// result of at most 1 KiB) and writes about 90 history events per workspace at worst. At this cap
// its largest state stays under the 256 KiB payload quota with every workspace failed at its worst
// (statemachine TestTheRequestStateAtTheCapStaysUnderThePayloadQuota: 241 KiB) and its history under
// 25,000 events (TestTheRequestExecutionHistoryIsBoundedAtTheCap: 18,204 with every retry used).
// LockWorkspaces takes the locks in transactions of at most 100, all or none. More workspaces are
// more requests.
const MaxWorkspacesPerRequest = 200

// requestFields are the execution input's fields, matched exactly (encoding/json alone would also
// accept "WORKSPACE_IDS").
var requestFields = []string{"workspace_ids", "key_arn", "key_alias", "use_cases", "reuse_key_for_cluster_volumes", "dry_run", "trigger", "rollback_of", "emergency"}

// ParseRequest decodes and normalises an execution input. It is the offline half of validation,
// shared by the Validate task and the operator CLI: every rejection names the field and the reason.
// Workspace ids may be given as strings or as JSON numbers (the console makes numbers easy to type).
func ParseRequest(raw []byte) (Request, error) {
	invalid := func(format string, args ...any) (Request, error) {
		return Request{}, taskerr.Errorf[taskerr.InvalidInput]("input is not valid: "+format, args...)
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Request{}, taskerr.Errorf[taskerr.InvalidInput]("input must be a JSON object like {\"workspace_ids\": [\"1234567890123456\"], \"key_arn\": \"arn:aws:kms:...\"}")
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&fields); err != nil {
		return invalid("%s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("malformed JSON: unexpected data after the object at byte %d", dec.InputOffset())
	}
	var problems []string
	for name := range fields {
		if !slices.Contains(requestFields, name) {
			problems = append(problems, fmt.Sprintf("unknown field %q (allowed: %s)", name, strings.Join(requestFields, ", ")))
		}
	}
	slices.Sort(problems)

	var wire struct {
		WorkspaceIDs              []json.RawMessage
		KeyARN                    *string
		KeyAlias                  string
		UseCases                  []string
		ReuseKeyForClusterVolumes *bool
		DryRun                    bool
		Trigger                   *Trigger
		RollbackOf                *RollbackOf
		Emergency                 bool
	}
	targets := map[string]any{
		"workspace_ids": &wire.WorkspaceIDs, "key_arn": &wire.KeyARN, "key_alias": &wire.KeyAlias, "use_cases": &wire.UseCases,
		"reuse_key_for_cluster_volumes": &wire.ReuseKeyForClusterVolumes, "dry_run": &wire.DryRun, "trigger": &wire.Trigger,
		"rollback_of": &wire.RollbackOf,
		"emergency":   &wire.Emergency,
	}
	for _, name := range requestFields {
		value, ok := fields[name]
		if !ok {
			continue
		}
		fd := json.NewDecoder(bytes.NewReader(value))
		fd.DisallowUnknownFields()
		if err := fd.Decode(targets[name]); err != nil {
			problems = append(problems, fmt.Sprintf("field %s: %s", name, describeFieldError(err)))
		}
	}
	if len(problems) > 0 {
		return invalid("%s", strings.Join(problems, "; "))
	}

	req := Request{KeyAlias: strings.TrimSpace(wire.KeyAlias), ReuseKeyForClusterVolumes: wire.ReuseKeyForClusterVolumes, DryRun: wire.DryRun, Trigger: wire.Trigger, RollbackOf: wire.RollbackOf, Emergency: wire.Emergency}
	if len(wire.WorkspaceIDs) == 0 {
		problems = append(problems, "workspace_ids: at least one workspace id is required")
	}
	seen := map[string]bool{}
	for i, rawID := range wire.WorkspaceIDs {
		id, ok := workspaceID(rawID)
		if !ok {
			problems = append(problems, fmt.Sprintf("workspace_ids[%d]: %s is not a Databricks workspace id (digits only)", i, strings.TrimSpace(string(rawID))))
			continue
		}
		if !seen[id] {
			seen[id] = true
			req.WorkspaceIDs = append(req.WorkspaceIDs, id)
		}
	}

	if len(req.WorkspaceIDs) > MaxWorkspacesPerRequest {
		problems = append(problems, fmt.Sprintf("workspace_ids: %d workspaces, but one request rotates at most %d (split them into several requests)", len(req.WorkspaceIDs), MaxWorkspacesPerRequest))
	}

	if wire.KeyARN == nil || strings.TrimSpace(*wire.KeyARN) == "" {
		problems = append(problems, "key_arn: required (arn:aws:kms:<region>:<account>:key/<key-id>)")
	} else {
		req.KeyARN = strings.TrimSpace(*wire.KeyARN)
	}

	if len(wire.UseCases) == 0 {
		req.UseCases = []string{UseCaseManagedServices}
	}
	for i, uc := range wire.UseCases {
		uc = strings.ToUpper(strings.TrimSpace(uc))
		if uc != UseCaseManagedServices && uc != UseCaseStorage {
			problems = append(problems, fmt.Sprintf("use_cases[%d]: %q is not MANAGED_SERVICES or STORAGE", i, wire.UseCases[i]))
			continue
		}
		if !slices.Contains(req.UseCases, uc) {
			req.UseCases = append(req.UseCases, uc)
		}
	}
	slices.Sort(req.UseCases)
	if req.ReuseKeyForClusterVolumes != nil && !slices.Contains(req.UseCases, UseCaseStorage) {
		problems = append(problems, "reuse_key_for_cluster_volumes: only applies when use_cases includes STORAGE")
	}
	if req.KeyAlias != "" && !strings.HasPrefix(req.KeyAlias, "alias/") {
		problems = append(problems, fmt.Sprintf("key_alias: %q must start with alias/", req.KeyAlias))
	}
	problems = append(problems, rollbackProblems(req)...)
	if req.Emergency && req.Trigger != nil {
		problems = append(problems, "emergency: only a start by hand (console, cmkrotate start --emergency) can be an emergency, not an automatic trigger")
	}
	if len(problems) > 0 {
		return invalid("%s", strings.Join(problems, "; "))
	}
	return req, nil
}

// rollbackProblems checks a rollback request offline. Only the managed services key is rolled back:
// Databricks cannot replace a storage key on a running workspace, so a rotation's storage key stays.
func rollbackProblems(req Request) []string {
	r := req.RollbackOf
	if r == nil {
		return nil
	}
	var problems []string
	for name, value := range map[string]string{"execution": r.Execution, "key_config_id": r.KeyConfigID, "previous_key_config_id": r.PreviousKeyConfigID} {
		if strings.TrimSpace(value) == "" {
			problems = append(problems, fmt.Sprintf("rollback_of.%s: required", name))
		}
	}
	if r.KeyConfigID != "" && r.KeyConfigID == r.PreviousKeyConfigID {
		problems = append(problems, "rollback_of: key_config_id and previous_key_config_id are the same configuration: there is nothing to roll back")
	}
	if !slices.Equal(req.UseCases, []string{UseCaseManagedServices}) {
		problems = append(problems, `use_cases: a rollback moves the managed services key only (["MANAGED_SERVICES"]); a storage key cannot be replaced on a running workspace`)
	}
	slices.Sort(problems)
	return problems
}

// workspaceID reads one id given as a JSON string or a JSON number.
func workspaceID(raw json.RawMessage) (string, bool) {
	var id string
	if err := json.Unmarshal(raw, &id); err != nil {
		var n json.Number
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if dec.Decode(&n) != nil {
			return "", false
		}
		id = n.String()
	}
	id = strings.TrimSpace(id)
	return id, workspaceIDPattern.MatchString(id)
}

// ReuseKeyForVolumes is the effective reuse flag: Databricks defaults it to true.
func (r Request) ReuseKeyForVolumes() bool {
	return r.ReuseKeyForClusterVolumes == nil || *r.ReuseKeyForClusterVolumes
}

// HasUseCase reports whether the use case was requested.
func HasUseCase(useCases []string, uc string) bool { return slices.Contains(useCases, uc) }

func describeJSONError(err error) string {
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the input ends before the object does"
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	}
	return "malformed JSON: " + err.Error()
}

func describeFieldError(err error) string {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		where := ""
		if typeErr.Field != "" {
			where = " at " + typeErr.Field
		}
		return fmt.Sprintf("expected %s%s, got a JSON %s", typeErr.Type, where, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return err.Error()
}
