// Package keypolicy decides whether a KMS key policy lets the Databricks control plane use the key
// for the requested use cases, and does so safely: every grant to Databricks must be scoped to one
// Databricks account with the aws:PrincipalTag/DatabricksAccountId condition, or any Databricks
// customer who learns the key ARN could have Databricks use it (a confused deputy).
//
// The check reads the policy text only; it does not call AWS. It is deliberately conservative:
// NotAction, NotPrincipal and NotResource statements never count as grants, a Deny counts when it
// could apply, and a principal of "*" is too broad to count as a grant to Databricks.
package keypolicy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// AccountConditionKey is the condition key Databricks sets on its control-plane principal.
const AccountConditionKey = "aws:PrincipalTag/DatabricksAccountId"

// AllowMissingAccountConditionParam is the operator-facing switch behind
// Requirement.AllowMissingAccountCondition (the Validate function's environment variable, read in
// internal/wire), quoted in rejection reasons so the reader knows what accepts the risk.
const AllowMissingAccountConditionParam = "ALLOW_POLICY_WITHOUT_ACCOUNT_CONDITION"

// Requirement says who must be able to use the key and for what.
type Requirement struct {
	// DatabricksAccountID is the Databricks account id (a UUID) the grants must be scoped to.
	DatabricksAccountID string
	// Partition is the AWS partition of the key: "aws" or "aws-us-gov".
	Partition string
	// UseCases are rotation.UseCaseManagedServices and/or rotation.UseCaseStorage; empty means
	// MANAGED_SERVICES, like an execution input without use_cases.
	UseCases []string
	// AllowMissingAccountCondition accepts grants to Databricks that lack the account condition.
	AllowMissingAccountCondition bool
	// KeyARN, when set, lets a statement whose Resource names the key (instead of "*") count.
	KeyARN string
	// GovCloudShard is ShardCivilian or ShardDoD; required in aws-us-gov, where only the principal
	// of the account's own shard counts.
	GovCloudShard string
	// VolumeRoleARNs are the cross-account roles of the workspaces that will encrypt cluster EBS
	// volumes with the key (STORAGE with reuse_key_for_cluster_volumes); each needs the EBS
	// statement. Empty means no such workspace.
	VolumeRoleARNs []string
	// Region is the key's region, for the EBS statement's kms:ViaService; defaults to KeyARN's.
	Region string
}

// Principal is one Databricks control-plane principal.
type Principal struct {
	ARN     string
	Account string
	Label   string
}

var (
	commercialPrincipals = []Principal{{ARN: "arn:aws:iam::414351767826:root", Account: "414351767826", Label: "Databricks control plane"}}
	govCloudPrincipals   = []Principal{
		{ARN: "arn:aws-us-gov:iam::044793339203:root", Account: "044793339203", Label: "Databricks GovCloud control plane"},
		{ARN: "arn:aws-us-gov:iam::170661010020:root", Account: "170661010020", Label: "Databricks GovCloud DoD control plane"},
	}
)

// Principals returns the Databricks control-plane principals of a partition; in GovCloud Check
// narrows them to the account's own shard (Requirement.GovCloudShard).
func Principals(partition string) ([]Principal, error) {
	switch partition {
	case "aws":
		return slices.Clone(commercialPrincipals), nil
	case "aws-us-gov":
		return slices.Clone(govCloudPrincipals), nil
	}
	return nil, fmt.Errorf("partition %q has no Databricks control plane (want aws or aws-us-gov)", partition)
}

// actionReq is one required permission as the Databricks docs spell it (kms:ReEncrypt*), with the
// concrete API actions that spelling must cover.
type actionReq struct {
	name     string
	concrete []string
}

var (
	actEncrypt     = actionReq{"kms:Encrypt", []string{"kms:Encrypt"}}
	actDecrypt     = actionReq{"kms:Decrypt", []string{"kms:Decrypt"}}
	actReEncrypt   = actionReq{"kms:ReEncrypt*", []string{"kms:ReEncryptFrom", "kms:ReEncryptTo"}}
	actGenerate    = actionReq{"kms:GenerateDataKey*", []string{"kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext"}}
	actDescribeKey = actionReq{"kms:DescribeKey", []string{"kms:DescribeKey"}}
)

// RequiredActions lists the actions (as Databricks documents them) the use cases need, in a stable order.
func RequiredActions(useCases []string) ([]string, error) {
	reqs, err := requiredActions(useCases)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.name
	}
	return out, nil
}

func requiredActions(useCases []string) ([]actionReq, error) {
	if len(useCases) == 0 {
		useCases = []string{rotation.UseCaseManagedServices}
	}
	storage := false
	for _, uc := range useCases {
		switch uc {
		case rotation.UseCaseManagedServices:
		case rotation.UseCaseStorage:
			storage = true
		default:
			return nil, fmt.Errorf("use case %q is neither %s nor %s", uc, rotation.UseCaseManagedServices, rotation.UseCaseStorage)
		}
	}
	if storage {
		return []actionReq{actEncrypt, actDecrypt, actReEncrypt, actGenerate, actDescribeKey}, nil
	}
	return []actionReq{actEncrypt, actDecrypt}, nil
}

// Check returns nil when the policy lets the Databricks control plane use the key for every
// requested use case with grants scoped to req.DatabricksAccountID, and otherwise a
// *taskerr.KeyPolicyRejected whose Reason names the principal, the actions and the condition at
// fault and says how to fix the policy. An unusable Requirement yields *taskerr.InvalidInput.
func Check(policyJSON string, req Requirement) error {
	principals, err := Principals(req.Partition)
	if err == nil {
		principals, err = shardPrincipals(req.Partition, req.GovCloudShard, principals)
	}
	if err != nil {
		return taskerr.Errorf[taskerr.InvalidInput]("cannot check the key policy: %v", err)
	}
	required, err := requiredActions(req.UseCases)
	if err != nil {
		return taskerr.Errorf[taskerr.InvalidInput]("cannot check the key policy: %v", err)
	}
	if strings.TrimSpace(req.DatabricksAccountID) == "" {
		return taskerr.Errorf[taskerr.InvalidInput]("cannot check the key policy: the Databricks account id is empty, so the %s condition cannot be checked", AccountConditionKey)
	}
	statements, err := parseDocument(policyJSON)
	if err != nil {
		return taskerr.Errorf[taskerr.KeyPolicyRejected]("%v", err)
	}
	var best *evaluation
	for _, p := range principals {
		ev := evaluate(statements, p, required, req)
		if ev.accepted(req.AllowMissingAccountCondition) {
			return checkVolumeRoles(statements, req)
		}
		if best == nil || ev.closerThan(best) {
			best = ev
		}
	}
	return taskerr.Errorf[taskerr.KeyPolicyRejected]("%s", best.reason(principals, required, req))
}

// evaluation is what the policy grants one Databricks principal.
type evaluation struct {
	principal Principal
	required  []actionReq
	// scoped and unscoped hold the concrete actions granted with and without the account condition.
	scoped, unscoped map[string]bool
	// unscopedStatements are the grants lacking the account condition, with what each grants.
	unscopedStatements []string
	// foreign are grants whose account condition names only other Databricks accounts.
	foreign map[string][]string
	// foreignOrder keeps foreign statement labels in policy order.
	foreignOrder []string
	denials      []denial
	granted      bool // any Allow statement for this principal at all
}

type denial struct {
	statement string
	actions   []string
}

func evaluate(statements []parsedStatement, p Principal, required []actionReq, req Requirement) *evaluation {
	ev := &evaluation{principal: p, required: required, scoped: map[string]bool{}, unscoped: map[string]bool{}, foreign: map[string][]string{}}
	concrete := concreteActions(required)
	for _, st := range statements {
		switch {
		case strings.EqualFold(st.effect, "Deny"):
			if d, ok := deniedBy(st, p, concrete, req.KeyARN); ok {
				ev.denials = append(ev.denials, d)
			}
		case strings.EqualFold(st.effect, "Allow"):
			ev.addGrant(st, concrete, req)
		}
	}
	return ev
}

func (ev *evaluation) addGrant(st parsedStatement, concrete []string, req Requirement) {
	// NotPrincipal, NotAction and NotResource in an Allow grant "everything but", which is either
	// far too broad or not what Databricks documents; neither counts as a grant to Databricks.
	if st.notPrincipal != nil || st.notAction != nil || st.notResource != nil {
		return
	}
	if !st.principal.names(ev.principal) || !resourceCoversKey(st.resource, req.KeyARN) {
		return
	}
	var granted []string
	for _, a := range concrete {
		if anyGlob(st.action, a, true) {
			granted = append(granted, a)
		}
	}
	if len(granted) == 0 {
		return
	}
	ev.granted = true
	switch scope, others := accountScope(st.conditions, req.DatabricksAccountID); scope {
	case scopeAccount:
		for _, a := range granted {
			ev.scoped[a] = true
		}
	case scopeNone:
		for _, a := range granted {
			ev.unscoped[a] = true
		}
		ev.unscopedStatements = append(ev.unscopedStatements, st.label)
	case scopeOtherAccounts:
		if _, seen := ev.foreign[st.label]; !seen {
			ev.foreignOrder = append(ev.foreignOrder, st.label)
		}
		ev.foreign[st.label] = others
	}
}

// accepted: nothing denies, everything is granted, and every grant is scoped (or the caller accepts
// unscoped grants). An unscoped grant is a risk even when scoped grants alone would suffice: the
// unscoped statement still lets any Databricks account use the key.
func (ev *evaluation) accepted(allowUnscoped bool) bool {
	if len(ev.denials) > 0 || len(ev.missing()) > 0 {
		return false
	}
	return allowUnscoped || len(ev.unscopedStatements) == 0
}

// missing returns the required concrete actions not granted, counting grants without the account
// condition too: those are reported as a confused-deputy risk, not as missing.
func (ev *evaluation) missing() map[string]bool {
	out := map[string]bool{}
	for _, a := range concreteActions(ev.required) {
		if !ev.scoped[a] && !ev.unscoped[a] {
			out[a] = true
		}
	}
	return out
}

func (ev *evaluation) closerThan(other *evaluation) bool {
	return ev.score() > other.score()
}

// score ranks evaluations so that the reason describes the principal the policy author was most
// likely aiming at: the one with the most grants.
func (ev *evaluation) score() int {
	return 2*(len(ev.scoped)+len(ev.unscoped)) + len(ev.foreign)
}

func (ev *evaluation) reason(all []Principal, required []actionReq, req Requirement) string {
	who := fmt.Sprintf("the %s (%s)", ev.principal.Label, ev.principal.ARN)
	if !ev.granted && len(ev.denials) == 0 && len(ev.foreign) == 0 && len(all) > 1 {
		arns := make([]string, len(all))
		for i, p := range all {
			arns[i] = p.ARN
		}
		who = fmt.Sprintf("the Databricks control plane (%s)", strings.Join(arns, " or "))
	}
	if len(ev.denials) > 0 {
		d := ev.denials[0]
		return fmt.Sprintf("key policy statement %s denies %s %s with no condition, so Databricks cannot use the key; remove the statement or exclude the Databricks principal from it",
			d.statement, who, strings.Join(d.actions, ", "))
	}
	missing := ev.missing()
	if len(missing) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "key policy does not allow %s %s", who, describeMissing(required, missing))
		for _, label := range ev.foreignOrder {
			fmt.Fprintf(&b, " (statement %s grants them only to Databricks account(s) %s, not %s)",
				label, strings.Join(ev.foreign[label], ", "), req.DatabricksAccountID)
		}
		if len(ev.unscopedStatements) > 0 && !req.AllowMissingAccountCondition {
			fmt.Fprintf(&b, " (statement %s also lacks the %s condition)", strings.Join(ev.unscopedStatements, ", "), AccountConditionKey)
		}
		fmt.Fprintf(&b, " for %s; add a statement %s", useCaseList(req.UseCases), suggestedStatement(ev.principal, required, req.DatabricksAccountID))
		for _, other := range all {
			if other.ARN != ev.principal.ARN {
				fmt.Fprintf(&b, " (or with Principal %s for the %s)", other.ARN, other.Label)
			}
		}
		return b.String()
	}
	return fmt.Sprintf("key policy lets %s use the key without the condition %s = %s (statement %s), so any Databricks account could have Databricks use this key (confused deputy); add \"Condition\": {\"StringEquals\": {%q: [%q]}} to the statement, or set %s=true to accept the risk",
		who, AccountConditionKey, req.DatabricksAccountID, strings.Join(ev.unscopedStatements, ", "),
		AccountConditionKey, req.DatabricksAccountID, AllowMissingAccountConditionParam)
}

func describeMissing(required []actionReq, missing map[string]bool) string {
	var parts []string
	for _, r := range required {
		var gone []string
		for _, a := range r.concrete {
			if missing[a] {
				gone = append(gone, a)
			}
		}
		switch {
		case len(gone) == 0:
		case len(gone) == len(r.concrete) || len(r.concrete) == 1:
			parts = append(parts, r.name)
		default:
			parts = append(parts, fmt.Sprintf("%s (%s is not granted)", r.name, strings.Join(gone, ", ")))
		}
	}
	return strings.Join(parts, ", ")
}

func useCaseList(useCases []string) string {
	if len(useCases) == 0 {
		return "use case " + rotation.UseCaseManagedServices
	}
	if len(useCases) == 1 {
		return "use case " + useCases[0]
	}
	return "use cases " + strings.Join(useCases, " and ")
}

func suggestedStatement(p Principal, required []actionReq, accountID string) string {
	actions := make([]string, len(required))
	for i, r := range required {
		actions[i] = r.name
	}
	// A struct, not a map, so the statement reads in the order policy authors write it.
	st := struct {
		Sid       string
		Effect    string
		Principal map[string]string
		Action    []string
		Resource  string
		Condition map[string]map[string][]string
	}{
		Sid:       "Allow Databricks to use the key",
		Effect:    "Allow",
		Principal: map[string]string{"AWS": p.ARN},
		Action:    actions,
		Resource:  "*",
		Condition: map[string]map[string][]string{"StringEquals": {AccountConditionKey: {accountID}}},
	}
	b, err := json.Marshal(st)
	if err != nil {
		return "(could not render the statement)"
	}
	return string(b)
}

func concreteActions(required []actionReq) []string {
	var out []string
	for _, r := range required {
		out = append(out, r.concrete...)
	}
	return out
}

// names reports whether the Principal element names p explicitly ("*" does not count).
func (ps principalSet) names(p Principal) bool {
	for _, v := range ps.aws {
		if isPrincipal(v, p) {
			return true
		}
	}
	return false
}

// appliesTo reports whether a Deny's Principal covers p: explicitly or through "*".
func (ps principalSet) appliesTo(p Principal) bool {
	return ps.wildcard || ps.names(p)
}

func isPrincipal(v string, p Principal) bool {
	v = strings.TrimSpace(v)
	return v == p.Account || strings.EqualFold(v, p.ARN)
}

func resourceCoversKey(resources []string, keyARN string) bool {
	for _, r := range resources {
		if r == "*" || (keyARN != "" && globMatch(r, keyARN, false)) {
			return true
		}
	}
	return false
}

func anyGlob(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if globMatch(p, s, fold) {
			return true
		}
	}
	return false
}

// deniedBy reports the required actions an unconditional Deny statement takes from p. It errs
// towards "applies": a Deny that might hit Databricks is worth a human look before a rotation.
func deniedBy(st parsedStatement, p Principal, concrete []string, keyARN string) (denial, bool) {
	if len(st.conditions) > 0 {
		return denial{}, false
	}
	switch {
	case st.notPrincipal != nil:
		if st.notPrincipal.names(p) {
			return denial{}, false
		}
	case !st.principal.appliesTo(p):
		return denial{}, false
	}
	switch {
	case st.notResource != nil:
		if keyARN != "" && anyGlob(st.notResource, keyARN, false) {
			return denial{}, false
		}
		if keyARN == "" && slices.Contains(st.notResource, "*") {
			return denial{}, false
		}
	case st.resource != nil:
		if keyARN != "" && !resourceCoversKey(st.resource, keyARN) {
			return denial{}, false
		}
	}
	var hit []string
	for _, a := range concrete {
		switch {
		case st.notAction != nil:
			if !anyGlob(st.notAction, a, true) {
				hit = append(hit, a)
			}
		case anyGlob(st.action, a, true):
			hit = append(hit, a)
		}
	}
	if len(hit) == 0 {
		return denial{}, false
	}
	return denial{statement: st.label, actions: hit}, true
}

type scope int

const (
	scopeNone scope = iota
	scopeAccount
	scopeOtherAccounts
)

// scopingOperators are the condition operators that pin aws:PrincipalTag/DatabricksAccountId to a
// value. The ...IfExists forms are left out on purpose: they pass when the tag is absent, which is
// exactly the confused-deputy case. ForAllValues: is accepted as the brief for this check asks,
// although on a single-valued key it also passes when the tag is absent.
var scopingOperators = map[string]func(pattern, value string) bool{
	"stringequals":           func(p, v string) bool { return p == v },
	"stringequalsignorecase": strings.EqualFold,
	"stringlike":             func(p, v string) bool { return globMatch(p, v, false) },
}

// accountScope classifies a statement's conditions: scoped to accountID, scoped only to other
// accounts (returned), or not scoped at all. Conditions on one key under several operators are
// ANDed by IAM, so every one of them must admit the account.
func accountScope(conds map[string]map[string][]string, accountID string) (scope, []string) {
	found, admits := false, true
	var others []string
	ops := make([]string, 0, len(conds))
	for op := range conds {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		match, ok := scopingOperators[strings.ToLower(stripSetQualifier(op))]
		if !ok {
			continue
		}
		keys := make([]string, 0, len(conds[op]))
		for k := range conds[op] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !strings.EqualFold(k, AccountConditionKey) {
				continue
			}
			found = true
			ok := false
			for _, v := range conds[op][k] {
				if match(v, accountID) {
					ok = true
				} else if !slices.Contains(others, v) {
					others = append(others, v)
				}
			}
			admits = admits && ok
		}
	}
	switch {
	case !found:
		return scopeNone, nil
	case admits:
		return scopeAccount, nil
	}
	return scopeOtherAccounts, others
}

func stripSetQualifier(op string) string {
	for _, q := range []string{"ForAnyValue:", "ForAllValues:"} {
		if len(op) >= len(q) && strings.EqualFold(op[:len(q)], q) {
			return op[len(q):]
		}
	}
	return op
}
