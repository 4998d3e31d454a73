// Package policy is the rotation policy: who may rotate which workspace onto which key, with which
// use cases, in which mode (automatic, approval, plan-only) and in which weekly maintenance window.
//
// The document lives in the repository (policy/rotation-policy.yaml), is reviewed like code and is
// compiled into the functions that need it (the trigger and the policy check), so the policy in force
// is exactly the one of the deployed commit: no store to keep in sync, no extra IAM permission, and
// changing it takes a deployment, which is what makes it a control. CI loads the bundled file
// (policy.TestTheBundledPolicyIsValid), so a malformed entry fails the build with the entry named.
//
// Default deny: a workspace that no rule names cannot be rotated, and an automatic trigger is refused
// unless a rule names the principal that made the KMS call.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	// The Lambda provided.al2023 runtime has no /usr/share/zoneinfo: windows in Europe/Berlin must
	// still resolve there.
	_ "time/tzdata"

	"gopkg.in/yaml.v3"
)

// Version is the only document version this code reads.
const Version = 1

// Modes of a rule.
const (
	ModeAutomatic = "automatic"
	ModeApproval  = "approval"
	ModePlanOnly  = "plan-only"
)

// DefaultApprovalTimeout applies when a rule in approval mode does not say.
const DefaultApprovalTimeout = 24 * time.Hour

// MaxApprovalTimeout bounds an approval wait: the state machine's TimeoutSeconds holds this, a
// window wait of up to MaxWindowWait and the rotation's own budgets (statemachine/budget_test.go).
const MaxApprovalTimeout = 7 * 24 * time.Hour

// MaxWindowWait bounds a wait for a maintenance window: Window.Next looks eight days ahead, so the
// opening it returns is less than nine days away.
const MaxWindowWait = 9 * 24 * time.Hour

// Document is the file as written.
type Document struct {
	Version int `yaml:"version"`
	// Accounts are AWS accounts, besides the stack's own, whose events on a shared bus the trigger
	// considers at all. Every other account's event is ignored before anything is read.
	Accounts []string `yaml:"accounts"`
	Rules    []Rule   `yaml:"rules"`
}

// Rule governs a group of workspaces.
type Rule struct {
	Name       string   `yaml:"name"`
	Workspaces []string `yaml:"workspaces"`
	// KeyAccounts are the accounts the key may live in (required).
	KeyAccounts []string `yaml:"key_accounts"`
	// Keys are key ARN patterns (* matches any run of characters); AliasPrefixes are alias name
	// prefixes. A key is allowed when it matches a pattern or the triggering alias has a prefix; when
	// both lists are empty, any key in KeyAccounts is.
	Keys          []string `yaml:"keys"`
	AliasPrefixes []string `yaml:"alias_prefixes"`
	// Principals are CloudTrail userIdentity ARN patterns allowed to trigger a rotation
	// automatically (by creating or tagging the key or moving the alias). Empty: no automatic trigger.
	Principals []string `yaml:"principals"`
	// UseCases allowed; default MANAGED_SERVICES only, so STORAGE must be allowed explicitly.
	UseCases []string `yaml:"use_cases"`
	Mode     string   `yaml:"mode"`
	// Window is a weekly maintenance window, e.g. "Sun 02:00-05:00 Europe/Berlin"; empty: any time.
	Window string `yaml:"window"`
	// EmergencyRequiresApproval: an emergency start still waits for an approval in approval mode.
	EmergencyRequiresApproval bool `yaml:"emergency_requires_approval"`
	// ApprovalTimeout is how long an approval may take before the request is rejected (e.g. "24h").
	ApprovalTimeout string `yaml:"approval_timeout"`
}

// Policy is a validated document, ready to evaluate.
type Policy struct {
	accounts []string
	rules    []rule
}

type rule struct {
	Rule
	keys            []*regexp.Regexp
	principals      []*regexp.Regexp
	window          *Window
	approvalTimeout time.Duration
}

// Error lists every problem of a document, each naming its entry.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "rotation policy: " + strings.Join(e.Problems, "; ")
}

var (
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	workspaceRE = regexp.MustCompile(`^[0-9]{1,19}$`)
	ruleNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	keyPatRE    = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-*]+:[0-9*]+:key/[A-Za-z0-9*-]+$`)
	principalRE = regexp.MustCompile(`^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:\S+$`)
	aliasPfxRE  = regexp.MustCompile(`^alias/[A-Za-z0-9/_-]+$`)
)

// Parse reads and validates a policy document. Unknown fields are errors (a typo must not silently
// drop a restriction); every problem is reported at once, each naming the rule it is in.
func Parse(data []byte) (*Policy, error) {
	var doc Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, &Error{Problems: []string{fmt.Sprintf("not a valid policy document: %v", err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Problems: []string{"more than one YAML document; the policy is one document"}}
	}
	return FromDocument(doc)
}

// FromDocument validates a decoded document.
func FromDocument(doc Document) (*Policy, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if doc.Version != Version {
		add("version is %d; this rotator reads version %d", doc.Version, Version)
	}
	for _, a := range doc.Accounts {
		if !accountRE.MatchString(a) {
			add("accounts: %q is not a 12-digit AWS account id", a)
		}
	}
	if len(doc.Rules) == 0 {
		add("rules: none; every rotation would be refused")
	}
	p := &Policy{accounts: doc.Accounts}
	names := map[string]bool{}
	owner := map[string]string{}
	for i, r := range doc.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if r.Name != "" {
			where = fmt.Sprintf("rule %q", r.Name)
		}
		switch {
		case r.Name == "":
			add("%s: name is required", where)
		case !ruleNameRE.MatchString(r.Name):
			add("%s: name must be 1-64 letters, digits, '.', '_' or '-'", where)
		case names[r.Name]:
			add("%s: the name is used twice", where)
		}
		names[r.Name] = true
		cr := rule{Rule: r}
		if len(r.Workspaces) == 0 {
			add("%s: workspaces is empty", where)
		}
		for _, w := range r.Workspaces {
			if !workspaceRE.MatchString(w) {
				add("%s: workspace %q is not a numeric workspace id (quote it: a 16-digit number loses digits)", where, w)
				continue
			}
			if prev, ok := owner[w]; ok && prev != r.Name {
				add("%s: workspace %s is already governed by rule %q; a workspace belongs to one rule", where, w, prev)
			}
			owner[w] = r.Name
		}
		if len(r.KeyAccounts) == 0 {
			add("%s: key_accounts is empty", where)
		}
		for _, a := range r.KeyAccounts {
			if !accountRE.MatchString(a) {
				add("%s: key_accounts: %q is not a 12-digit AWS account id", where, a)
			}
		}
		for _, k := range r.Keys {
			if !keyPatRE.MatchString(k) {
				add("%s: keys: %q is not a key ARN pattern (arn:aws:kms:<region>:<account>:key/<id>, * allowed)", where, k)
				continue
			}
			cr.keys = append(cr.keys, glob(k))
		}
		for _, a := range r.AliasPrefixes {
			if !aliasPfxRE.MatchString(a) || strings.HasPrefix(a, "alias/aws/") {
				add("%s: alias_prefixes: %q is not an alias prefix (alias/..., not alias/aws/)", where, a)
			}
		}
		for _, pr := range r.Principals {
			if !principalRE.MatchString(pr) {
				add("%s: principals: %q is not an IAM or STS ARN pattern", where, pr)
				continue
			}
			cr.principals = append(cr.principals, glob(pr))
		}
		if len(cr.UseCases) == 0 {
			cr.UseCases = []string{useCaseManagedServices}
		}
		for _, u := range cr.UseCases {
			if u != useCaseManagedServices && u != useCaseStorage {
				add("%s: use_cases: %q is not MANAGED_SERVICES or STORAGE", where, u)
			}
		}
		switch r.Mode {
		case ModeAutomatic, ModeApproval, ModePlanOnly:
		case "":
			add("%s: mode is required (automatic, approval or plan-only)", where)
		default:
			add("%s: mode %q is not automatic, approval or plan-only", where, r.Mode)
		}
		if r.Window != "" {
			w, err := ParseWindow(r.Window)
			switch {
			case err != nil:
				add("%s: %v", where, err)
			case w.Length() < Budget(cr.UseCases):
				add("%s: window %q lasts %s, shorter than the %s a rotation with %s needs", where, r.Window, w.Length(), Budget(cr.UseCases), strings.Join(cr.UseCases, " and "))
			default:
				cr.window = w
			}
		}
		cr.approvalTimeout = DefaultApprovalTimeout
		if r.ApprovalTimeout != "" {
			d, err := time.ParseDuration(r.ApprovalTimeout)
			switch {
			case err != nil:
				add("%s: approval_timeout %q is not a duration (e.g. 24h)", where, r.ApprovalTimeout)
			case d < time.Second || d > MaxApprovalTimeout:
				add("%s: approval_timeout %s is outside 1s..%s", where, d, MaxApprovalTimeout)
			default:
				cr.approvalTimeout = d
			}
		}
		p.rules = append(p.rules, cr)
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return p, nil
}

// Use cases, as rotation names them; repeated here so the policy reads without importing the
// execution documents.
const (
	useCaseManagedServices = "MANAGED_SERVICES"
	useCaseStorage         = "STORAGE"
)

// Budget is the longest a rotation keeps a workspace's compute down, from the state machine's
// Comment: stop 30 min + update 15 min + restart 30 min; a storage key adds 30 min of update and the
// 20-minute quiet window. A rotation starts in a window only if this much of it is left.
func Budget(useCases []string) time.Duration {
	b := 75 * time.Minute
	if slices.Contains(useCases, useCaseStorage) {
		b += 50 * time.Minute
	}
	return b
}

// glob compiles a pattern in which * matches any run of characters (including '/' and ':', which an
// ARN pattern must be able to span, unlike path.Match).
func glob(pattern string) *regexp.Regexp {
	parts := strings.Split(pattern, "*")
	for i, part := range parts {
		parts[i] = regexp.QuoteMeta(part)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// AcceptsAccount reports whether events from account are considered: the stack's own account or one
// the policy lists.
func (p *Policy) AcceptsAccount(stackAccount, account string) bool {
	return account != "" && (account == stackAccount || slices.Contains(p.accounts, account))
}

// ErrNoRule is wrapped by a refusal for a workspace that no rule names.
var ErrNoRule = errors.New("no rule names the workspace")
