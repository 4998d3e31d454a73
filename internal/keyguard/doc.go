// Package keyguard watches for KMS changes that would take a key away from a Databricks workspace
// that depends on it, and raises the alarm (and, when asked to, undoes the change).
//
// # Events
//
//   - CloudTrail ScheduleKeyDeletion and DisableKey that succeeded (no errorCode): the key is
//     unusable from now on. Pending deletion, it can still be recovered until the deletion date.
//   - CloudTrail PutKeyPolicy that succeeded: the new policy (requestParameters.policy) is checked
//     with internal/keypolicy against the uses of the workspaces that depend on the key; when it no
//     longer lets Databricks use the key (or the record does not carry it), the same critical event
//     is raised. CloudTrail carries only the new policy and KMS keeps no history, so the undo puts
//     back the policy Validate last accepted for the key (internal/policysnap), when there is one and
//     it still grants what the workspaces need.
//   - Native "KMS CMK Deletion": the waiting period ended and the key is gone for good. Nothing can
//     be undone; the event only says which workspaces lost their key.
//
// Anything else, failed calls, and calls made by IGNORED_PRINCIPAL_ARNS are logged and ignored.
// The key comes from requestParameters.keyId (key ARN, key id, alias name or alias ARN; what is not
// a key ARN is resolved with DescribeKey), or from detail.resources, which name the key the call
// acted on and therefore win over an alias that may have been pointed elsewhere since.
//
// # Who depends on a key
//
// A workspace depends on a key when one of the account's key configurations has the key's ARN as
// aws_key_info.key_arn and the workspace uses that configuration for managed services or for
// storage. A workspace also depends on a key for 24 hours after a rotation moved it off the key:
// Databricks may still need the previous key during that time. The running executions of the
// retirement reminder state machine are the record of those rotations (each waits 24 hours after
// a rotation, and its input lists the workspaces with their outcome and previous key ARN).
//
// A key no workspace depends on is logged at INFO; nothing is published and nothing undone.
// Otherwise the guard publishes a "Key In Use At Risk" event with severity CRITICAL that names the
// workspaces and the use each makes of the key.
//
// # Undo (UNDO_KEY_CHANGES=true)
//
// ScheduleKeyDeletion is undone with CancelKeyDeletion, DisableKey with EnableKey, PutKeyPolicy with
// PutKeyPolicy of the last validated policy (which also drops whatever else the new policy changed;
// the event says so). AWS leaves a
// key whose deletion was cancelled Disabled (local-kms leaves it Enabled), so the guard then also
// enables it. It cannot read the state the key had before the deletion was scheduled (KMS does not
// keep it; only CloudTrail does), so it relies on its own invariant instead: with undo on, it
// re-enables every key a workspace depends on as soon as someone disables it, so such a key was
// Enabled when its deletion was scheduled. Each step reads the key state first, so a redelivered
// event converges instead of failing.
//
// # Failures
//
// An event the guard cannot use is logged with the reason and acknowledged (nil): EventBridge
// would only redeliver it. A failed AWS or Databricks call while finding the dependent workspaces
// or publishing the event is returned, so that the asynchronous invocation is retried. A failed
// undo is reported in the event (undo_error) and, when the failure is transient, also returned so
// that the retry tries again; consumers deduplicate on event_id.
package keyguard
