package trigger

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// Tag names under the prefix (see the package documentation).
const (
	TagWorkspace                 = "workspace"
	TagUseCases                  = "use-cases"
	TagReuseKeyForClusterVolumes = "reuse-key-for-cluster-volumes"
	TagDryRun                    = "dry-run"
)

// KeyTags is what a key's tags ask for.
type KeyTags struct {
	// WorkspaceIDs is nil when the key does not carry the workspace tag (it has not opted in).
	WorkspaceIDs              []string
	UseCases                  []string
	ReuseKeyForClusterVolumes *bool
	DryRun                    bool
}

// TagError is an opt-in tag with a value the scheme does not accept.
type TagError struct {
	Tag     string
	Value   string
	Problem string
}

func (e *TagError) Error() string {
	return fmt.Sprintf("tag %s=%q is invalid: %s", e.Tag, truncate(e.Value, 256), e.Problem)
}

// Databricks workspace ids are positive integers without leading zeros; 16 digits today, 19 fit an int64.
var workspaceIDRE = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

// splitTagValue splits on the separators KMS allows in tag values (space, '+', '/') and on commas.
func splitTagValue(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == '+' || r == '/' || r == ',' || unicode.IsSpace(r)
	})
}

// ParseTags reads the opt-in tags under prefix from a key's tags (key -> value).
func ParseTags(prefix string, tags map[string]string) (KeyTags, error) {
	var kt KeyTags
	if v, ok := tags[prefix+TagWorkspace]; ok {
		ids, err := parseWorkspaceIDs(prefix+TagWorkspace, v)
		if err != nil {
			return KeyTags{}, err
		}
		kt.WorkspaceIDs = ids
	}
	kt.UseCases = []string{rotation.UseCaseManagedServices}
	if v, ok := tags[prefix+TagUseCases]; ok {
		ucs, err := parseUseCases(prefix+TagUseCases, v)
		if err != nil {
			return KeyTags{}, err
		}
		kt.UseCases = ucs
	}
	if v, ok := tags[prefix+TagReuseKeyForClusterVolumes]; ok {
		b, err := parseBool(prefix+TagReuseKeyForClusterVolumes, v)
		if err != nil {
			return KeyTags{}, err
		}
		if !slices.Contains(kt.UseCases, rotation.UseCaseStorage) {
			return KeyTags{}, &TagError{Tag: prefix + TagReuseKeyForClusterVolumes, Value: v,
				Problem: fmt.Sprintf("it only applies when %s%s includes %s", prefix, TagUseCases, rotation.UseCaseStorage)}
		}
		kt.ReuseKeyForClusterVolumes = &b
	}
	if v, ok := tags[prefix+TagDryRun]; ok {
		b, err := parseBool(prefix+TagDryRun, v)
		if err != nil {
			return KeyTags{}, err
		}
		kt.DryRun = b
	}
	return kt, nil
}

func parseWorkspaceIDs(tag, v string) ([]string, error) {
	fields := splitTagValue(v)
	if len(fields) == 0 {
		return nil, &TagError{Tag: tag, Value: v, Problem: "it names no workspace id"}
	}
	var ids []string
	for _, f := range fields {
		if !workspaceIDRE.MatchString(f) {
			return nil, &TagError{Tag: tag, Value: v, Problem: fmt.Sprintf("%q is not a Databricks workspace id (digits, no leading zero; separate ids with spaces, + or /)", truncate(f, 40))}
		}
		if !slices.Contains(ids, f) {
			ids = append(ids, f)
		}
	}
	sortWorkspaceIDs(ids)
	return ids, nil
}

// sortWorkspaceIDs orders ids numerically (they have no leading zeros, so shorter is smaller).
func sortWorkspaceIDs(ids []string) {
	slices.SortFunc(ids, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
}

func parseUseCases(tag, v string) ([]string, error) {
	fields := splitTagValue(v)
	if len(fields) == 0 {
		return nil, &TagError{Tag: tag, Value: v, Problem: "it names no use case (want MANAGED_SERVICES, STORAGE or both)"}
	}
	var managed, storage bool
	for _, f := range fields {
		switch strings.ReplaceAll(strings.ToUpper(f), "-", "_") {
		case rotation.UseCaseManagedServices:
			managed = true
		case rotation.UseCaseStorage:
			storage = true
		default:
			return nil, &TagError{Tag: tag, Value: v, Problem: fmt.Sprintf("%q is not a use case (want MANAGED_SERVICES, STORAGE or both)", truncate(f, 40))}
		}
	}
	var out []string
	if managed {
		out = append(out, rotation.UseCaseManagedServices)
	}
	if storage {
		out = append(out, rotation.UseCaseStorage)
	}
	return out, nil
}

func parseBool(tag, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, &TagError{Tag: tag, Value: v, Problem: "want true or false"}
}

// hasTagUnder reports whether any key starts with prefix.
func hasTagUnder(prefix string, keys []string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
