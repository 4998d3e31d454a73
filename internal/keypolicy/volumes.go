package keypolicy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// ViaServiceConditionKey is the condition key that limits a grant to calls made through one AWS
// service on the principal's behalf.
const ViaServiceConditionKey = "kms:ViaService"

// GovCloud deployment shards: a Databricks account lives in exactly one of them, and each has its
// own control-plane principal, so a policy that grants only the other shard's principal gives the
// workspace nothing.
const (
	ShardCivilian = "civilian"
	ShardDoD      = "dod"
)

// ShardOfAccountHost tells the GovCloud shard from the Databricks account host
// (accounts.cloud.databricks.us is civilian, accounts-dod.cloud.databricks.mil is DoD); "" when the
// host names neither, e.g. a commercial or a loopback host.
func ShardOfAccountHost(host string) string {
	h := strings.ToLower(host)
	h = strings.TrimPrefix(strings.TrimPrefix(h, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	h, _, _ = strings.Cut(h, ":")
	switch {
	case strings.HasSuffix(h, ".databricks.mil") || strings.HasPrefix(h, "accounts-dod."):
		return ShardDoD
	case strings.HasSuffix(h, ".databricks.us"):
		return ShardCivilian
	}
	return ""
}

var actCreateGrant = actionReq{"kms:CreateGrant", []string{"kms:CreateGrant"}}

// volumeActions are what the workspace's cross-account role needs, through EC2, to encrypt the
// EBS volumes of the clusters it launches with a storage key reused for cluster volumes.
var volumeActions = []actionReq{actDecrypt, actGenerate, actCreateGrant, actDescribeKey}

// checkVolumeRoles requires, for each cross-account role, an Allow statement naming the role that
// grants volumeActions through EC2 in the key's region. Without it the PATCH succeeds and every
// later cluster launch fails, and a storage key can never be replaced afterwards.
func checkVolumeRoles(statements []parsedStatement, req Requirement) error {
	if len(req.VolumeRoleARNs) == 0 {
		return nil
	}
	region := strings.TrimSpace(req.Region)
	if region == "" {
		if parts := strings.Split(req.KeyARN, ":"); len(parts) > 3 {
			region = parts[3]
		}
	}
	if region == "" {
		return taskerr.Errorf[taskerr.InvalidInput]("cannot check the key policy's EBS statement: the key's region is unknown, so %s = ec2.<region>.amazonaws.com cannot be checked", ViaServiceConditionKey)
	}
	via := "ec2." + region + ".amazonaws.com"
	concrete := concreteActions(volumeActions)
	for _, role := range req.VolumeRoleARNs {
		p := Principal{ARN: role, Label: "workspace cross-account role"}
		granted := map[string]bool{}
		var denials []denial
		for _, st := range statements {
			switch {
			case strings.EqualFold(st.effect, "Deny"):
				if d, ok := deniedBy(st, p, concrete, req.KeyARN); ok {
					denials = append(denials, d)
				}
			case strings.EqualFold(st.effect, "Allow"):
				if st.notPrincipal != nil || st.notAction != nil || st.notResource != nil {
					continue
				}
				if !st.principal.names(p) || !resourceCoversKey(st.resource, req.KeyARN) || !admitsVia(st.conditions, via) {
					continue
				}
				for _, a := range concrete {
					if anyGlob(st.action, a, true) {
						granted[a] = true
					}
				}
			}
		}
		if len(denials) > 0 {
			d := denials[0]
			return taskerr.Errorf[taskerr.KeyPolicyRejected]("key policy statement %s denies the %s (%s) %s with no condition, so clusters could not encrypt their EBS volumes with the key; remove the statement or exclude the role from it",
				d.statement, p.Label, role, strings.Join(d.actions, ", "))
		}
		missing := map[string]bool{}
		for _, a := range concrete {
			if !granted[a] {
				missing[a] = true
			}
		}
		if len(missing) > 0 {
			return taskerr.Errorf[taskerr.KeyPolicyRejected]("key policy lacks the EBS statement: it does not allow the %s (%s) %s via EC2 (%s = %s), which STORAGE with reuse_key_for_cluster_volumes needs to encrypt cluster volumes; a storage key cannot be replaced later, so nothing was changed. Add a statement %s, or request reuse_key_for_cluster_volumes false",
				p.Label, role, describeMissing(volumeActions, missing), ViaServiceConditionKey, via, suggestedVolumeStatement(role))
		}
	}
	return nil
}

// admitsVia reports whether a statement's kms:ViaService conditions (if any) let a call made
// through the given service endpoint through. Operators it cannot evaluate count as not admitting:
// a storage key is irreversible, so doubt is a refusal.
func admitsVia(conds map[string]map[string][]string, via string) bool {
	for op, keys := range conds {
		for k, values := range keys {
			if !strings.EqualFold(k, ViaServiceConditionKey) {
				continue
			}
			var match func(p, v string) bool
			switch strings.ToLower(stripSetQualifier(op)) {
			case "stringequals":
				match = func(p, v string) bool { return p == v }
			case "stringequalsignorecase":
				match = strings.EqualFold
			case "stringlike":
				match = func(p, v string) bool { return globMatch(p, v, false) }
			default:
				return false
			}
			if !slices.ContainsFunc(values, func(p string) bool { return match(p, via) }) {
				return false
			}
		}
	}
	return true
}

func suggestedVolumeStatement(role string) string {
	st := struct {
		Sid       string
		Effect    string
		Principal map[string]string
		Action    []string
		Resource  string
		Condition map[string]map[string]string
	}{
		Sid:       "Allow Databricks to use KMS key for EBS",
		Effect:    "Allow",
		Principal: map[string]string{"AWS": role},
		Action:    []string{actDecrypt.name, actGenerate.name, actCreateGrant.name, actDescribeKey.name},
		Resource:  "*",
		Condition: map[string]map[string]string{"ForAnyValue:StringLike": {ViaServiceConditionKey: "ec2.*.amazonaws.com"}},
	}
	b, err := json.Marshal(st)
	if err != nil {
		return "(could not render the statement)"
	}
	return string(b)
}

// shardPrincipals narrows the GovCloud principals to the workspace's own shard.
func shardPrincipals(partition, shard string, all []Principal) ([]Principal, error) {
	if partition != "aws-us-gov" {
		return all, nil
	}
	var account string
	switch shard {
	case ShardCivilian:
		account = "044793339203"
	case ShardDoD:
		account = "170661010020"
	default:
		return nil, fmt.Errorf("the GovCloud shard of the Databricks account is unknown (want %q or %q, from the account host or DATABRICKS_GOVCLOUD_SHARD), so the principal the key policy must name cannot be chosen", ShardCivilian, ShardDoD)
	}
	for _, p := range all {
		if p.Account == account {
			return []Principal{p}, nil
		}
	}
	return nil, fmt.Errorf("no Databricks principal for GovCloud shard %q", shard)
}
