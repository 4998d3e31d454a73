package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Request is what a rotation asks for, as far as the policy is concerned.
type Request struct {
	WorkspaceIDs []string
	KeyARN       string
	// KeyAlias is the alias that was created or moved (automatic triggers), or the one an operator
	// recorded.
	KeyAlias string
	UseCases []string
	// Automatic is true for a start by the trigger; Actor is then the CloudTrail userIdentity ARN
	// (and SessionIssuer the role behind an assumed-role session) of the KMS call.
	Automatic     bool
	Actor         string
	SessionIssuer string
	Emergency     bool
	DryRun        bool
}

// Decision is what the policy allows a request to do.
type Decision struct {
	// Rules are the names of the rules that govern the request's workspaces, sorted.
	Rules []string `json:"rules"`
	// Mode is the strictest mode among them.
	Mode string `json:"mode"`
	// ApprovalRequired: wait for an approval before anything is locked or stopped.
	ApprovalRequired       bool `json:"approval_required"`
	ApprovalTimeoutSeconds int  `json:"approval_timeout_seconds,omitempty"`
	// Window is the maintenance window the rotation must start in; empty: any time (or an emergency).
	Window string `json:"window,omitempty"`

	window *Window
}

// Refusal is a request the policy does not allow; Rule names the rule that refused it
// ("default-deny" when no rule names a workspace).
type Refusal struct {
	Rule   string
	Reason string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("refused by rotation policy rule %q: %s", r.Rule, r.Reason)
}

// DefaultDeny is the Rule of a refusal for a workspace that no rule names.
const DefaultDeny = "default-deny"

var modeRank = map[string]int{ModeAutomatic: 0, ModeApproval: 1, ModePlanOnly: 2}

// Evaluate applies the policy to a request. Every workspace must be governed by a rule that allows
// the key, the use cases and, for an automatic trigger, the principal; the request then takes the
// strictest mode of those rules. Workspaces under different windows cannot share one execution.
func (p *Policy) Evaluate(req Request) (Decision, error) {
	if len(req.WorkspaceIDs) == 0 {
		return Decision{}, &Refusal{Rule: DefaultDeny, Reason: "the request names no workspace"}
	}
	var (
		d      = Decision{Mode: ModeAutomatic}
		seen   = map[string]*rule{}
		window *rule
	)
	for _, ws := range req.WorkspaceIDs {
		r := p.ruleFor(ws)
		if r == nil {
			return Decision{}, &Refusal{Rule: DefaultDeny, Reason: fmt.Sprintf("workspace %s: %v", ws, ErrNoRule)}
		}
		if _, ok := seen[r.Name]; ok {
			continue
		}
		seen[r.Name] = r
		if err := r.allows(req); err != nil {
			return Decision{}, err
		}
		if modeRank[r.Mode] > modeRank[d.Mode] {
			d.Mode = r.Mode
		}
		if r.Mode == ModeApproval && (!req.Emergency || r.EmergencyRequiresApproval) {
			d.ApprovalRequired = true
			secs := int(r.approvalTimeout / time.Second)
			if d.ApprovalTimeoutSeconds == 0 || secs < d.ApprovalTimeoutSeconds {
				d.ApprovalTimeoutSeconds = secs
			}
		}
		if r.window != nil && !req.Emergency {
			if window != nil && window.window.String() != r.window.String() {
				return Decision{}, &Refusal{Rule: r.Name, Reason: fmt.Sprintf("its window %q differs from rule %q's window %q; rotate these workspaces in separate requests", r.Window, window.Name, window.Window)}
			}
			window = r
		}
		d.Rules = append(d.Rules, r.Name)
	}
	slices.Sort(d.Rules)
	if d.Mode == ModePlanOnly && !req.DryRun {
		return Decision{}, &Refusal{Rule: strings.Join(d.Rules, ","), Reason: "the mode is plan-only: only a dry run (dry_run: true) is allowed"}
	}
	if d.Mode == ModePlanOnly || req.DryRun {
		// A dry run changes nothing: it needs neither an approval nor a window.
		d.ApprovalRequired, d.ApprovalTimeoutSeconds = false, 0
		return d, nil
	}
	if window != nil {
		d.Window, d.window = window.Window, window.window
	}
	return d, nil
}

// PlanOnly reports whether any of the workspaces is governed by a plan-only rule: the trigger then
// asks for a dry run instead of a rotation.
func (p *Policy) PlanOnly(workspaceIDs []string) bool {
	for _, ws := range workspaceIDs {
		if r := p.ruleFor(ws); r != nil && r.Mode == ModePlanOnly {
			return true
		}
	}
	return false
}

// NextStart is when the rotation may begin: now if no window applies or the budget fits in the
// window that is open now, else the next opening whose window holds the budget. closes is that
// window's end (zero without a window).
func (d Decision) NextStart(now time.Time, budget time.Duration) (start, closes time.Time, err error) {
	if d.window == nil {
		return now, time.Time{}, nil
	}
	return d.window.Next(now, budget)
}

func (p *Policy) ruleFor(workspaceID string) *rule {
	for i := range p.rules {
		if slices.Contains(p.rules[i].Workspaces, workspaceID) {
			return &p.rules[i]
		}
	}
	return nil
}

func (r *rule) allows(req Request) error {
	refuse := func(format string, args ...any) error {
		return &Refusal{Rule: r.Name, Reason: fmt.Sprintf(format, args...)}
	}
	account, resource, ok := kmsResource(req.KeyARN)
	if !ok {
		return refuse("key %q is not a KMS key or alias ARN", req.KeyARN)
	}
	if !slices.Contains(r.KeyAccounts, account) {
		return refuse("key %s is in account %s, which key_accounts does not list", req.KeyARN, account)
	}
	if len(r.Keys) > 0 || len(r.AliasPrefixes) > 0 {
		allowed := false
		for _, k := range r.keys {
			allowed = allowed || k.MatchString(req.KeyARN)
		}
		alias := req.KeyAlias
		if strings.HasPrefix(resource, "alias/") {
			alias = resource
		}
		for _, pfx := range r.AliasPrefixes {
			allowed = allowed || (alias != "" && strings.HasPrefix(alias, pfx))
		}
		if !allowed {
			return refuse("key %s (alias %q) matches neither keys nor alias_prefixes", req.KeyARN, alias)
		}
	}
	for _, u := range req.UseCases {
		if !slices.Contains(r.UseCases, u) {
			return refuse("use case %s is not allowed (use_cases: %s)", u, strings.Join(r.UseCases, ", "))
		}
	}
	if req.Automatic {
		if req.Actor == "" && req.SessionIssuer == "" {
			return refuse("the triggering call has no userIdentity ARN, so no principal can be matched")
		}
		matched := false
		for _, pr := range r.principals {
			matched = matched || (req.Actor != "" && pr.MatchString(req.Actor)) || (req.SessionIssuer != "" && pr.MatchString(req.SessionIssuer))
		}
		if !matched {
			if len(r.principals) == 0 {
				return refuse("no principal may trigger a rotation automatically (principals is empty); %s is refused", req.Actor)
			}
			return refuse("principal %s is not allowed to trigger a rotation (principals)", req.Actor)
		}
	}
	return nil
}

// kmsResource splits arn:aws:kms:<region>:<account>:<resource>.
func kmsResource(arn string) (account, resource string, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kms" || parts[4] == "" {
		return "", "", false
	}
	if !strings.HasPrefix(parts[5], "key/") && !strings.HasPrefix(parts[5], "alias/") {
		return "", "", false
	}
	return parts[4], parts[5], true
}
