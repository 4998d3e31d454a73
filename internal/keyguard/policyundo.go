package keyguard

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policysnap"
)

// PolicySnapshots reads the last key policy a rotation validated (internal/policysnap).
type PolicySnapshots interface {
	Load(ctx context.Context, keyARN string) (policysnap.Snapshot, bool, error)
}

var _ PolicySnapshots = (*policysnap.Store)(nil)

// undoPolicy puts back the policy Validate last accepted for the key, when that policy still lets
// the workspaces at risk use the key. CloudTrail carries only the new policy and KMS keeps no
// history, so the snapshot is the only previous policy there is; without one, nothing is guessed.
// Restoring also drops whatever else the new policy changed: the event says so, and names the
// snapshot's date, so that an operator re-applies a legitimate change with the Databricks grant kept.
func (h *Handler) undoPolicy(ctx context.Context, kc KeyChange, atRisk []WorkspaceAtRisk) undoResult {
	r := undoResult{action: UndoPutKeyPolicy}
	if h.Policies == nil {
		r.problem = "no key policy snapshots are configured (INVENTORY_BUCKET), so the previous policy is unknown"
		return r
	}
	snap, found, err := h.Policies.Load(ctx, kc.KeyARN)
	if err != nil {
		return r.failed("s3:GetObject", err)
	}
	if !found {
		r.problem = "no rotation validated this key, so there is no snapshot of a policy that let Databricks use it"
		return r
	}
	if problem := h.policyProblem(KeyChange{KeyARN: kc.KeyARN, Policy: snap.Policy}, atRisk); problem != "" {
		r.problem = "the snapshot of " + snap.ValidatedAt.UTC().Format(time.RFC3339) + " does not let the workspaces use the key either: " + problem
		return r
	}
	if _, err := h.KMS.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(kc.KeyARN),
		PolicyName: aws.String("default"), Policy: aws.String(snap.Policy)}); err != nil {
		return r.failed("PutKeyPolicy", err)
	}
	r.undone = true
	r.restoredFrom = fmt.Sprintf("the policy a rotation validated at %s", snap.ValidatedAt.UTC().Format(time.RFC3339))
	if snap.Execution != "" {
		r.restoredFrom += " (execution " + snap.Execution + ")"
	}
	return r
}
