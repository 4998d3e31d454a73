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

	"github.com/acme/databricks-cmk-rotator/internal/taskerr"
)

var workspaceIDPattern = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

// ParseRequest decodes and normalises an execution input. It is the offline half of validation,
// shared by the Validate task and the operator CLI: every rejection names the field and the reason.
// Workspace ids may be given as strings or as JSON numbers (the console makes numbers easy to type).
func ParseRequest(raw []byte) (Request, error) {
	var wire struct {
		WorkspaceIDs              []json.RawMessage `json:"workspace_ids"`
		KeyARN                    *string           `json:"key_arn"`
		KeyAlias                  string            `json:"key_alias"`
		UseCases                  []string          `json:"use_cases"`
		ReuseKeyForClusterVolumes *bool             `json:"reuse_key_for_cluster_volumes"`
		DryRun                    bool              `json:"dry_run"`
		Trigger                   *Trigger          `json:"trigger"`
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Request{}, taskerr.Errorf[taskerr.InvalidInput]("input must be a JSON object like {\"workspace_ids\": [\"1234567890123456\"], \"key_arn\": \"arn:aws:kms:...\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wire); err != nil {
		return Request{}, taskerr.Errorf[taskerr.InvalidInput]("input is not valid: %s", describeJSONError(err))
	}
	req := Request{KeyAlias: strings.TrimSpace(wire.KeyAlias), ReuseKeyForClusterVolumes: wire.ReuseKeyForClusterVolumes, DryRun: wire.DryRun, Trigger: wire.Trigger}
	var problems []string

	if len(wire.WorkspaceIDs) == 0 {
		problems = append(problems, "workspace_ids: at least one workspace id is required")
	}
	seen := map[string]bool{}
	for i, rawID := range wire.WorkspaceIDs {
		id := strings.TrimSpace(strings.Trim(string(rawID), `"`))
		if !workspaceIDPattern.MatchString(id) {
			problems = append(problems, fmt.Sprintf("workspace_ids[%d]: %q is not a Databricks workspace id (digits only)", i, id))
			continue
		}
		if !seen[id] {
			seen[id] = true
			req.WorkspaceIDs = append(req.WorkspaceIDs, id)
		}
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
	if len(problems) > 0 {
		return Request{}, taskerr.Errorf[taskerr.InvalidInput]("input is not valid: %s", strings.Join(problems, "; "))
	}
	return req, nil
}

// ReuseKeyForVolumes is the effective reuse flag: Databricks defaults it to true.
func (r Request) ReuseKeyForVolumes() bool {
	return r.ReuseKeyForClusterVolumes == nil || *r.ReuseKeyForClusterVolumes
}

// HasUseCase reports whether the use case was requested.
func HasUseCase(useCases []string, uc string) bool { return slices.Contains(useCases, uc) }

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("field %s: expected %s, got a JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the input ends before the object does"
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ") + " (allowed: workspace_ids, key_arn, key_alias, use_cases, reuse_key_for_cluster_volumes, dry_run, trigger)"
	}
	return err.Error()
}
