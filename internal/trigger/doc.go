// Package trigger turns KMS events delivered by EventBridge into rotation executions.
//
// # Opt-in tag scheme
//
// Nothing happens to a key unless its owner opts in with tags on the key. The tag keys below use
// the default prefix "databricks:" (TAG_PREFIX changes it; keys are matched case-sensitively, as
// KMS stores them). Tags outside the prefix are never read, and unknown keys under the prefix are
// ignored so that other tools may share it.
//
//	databricks:workspace                       required to opt in. One or more Databricks workspace
//	                                           ids (digits), separated by spaces, "+" or "/". KMS tag
//	                                           values cannot contain commas, but commas are accepted
//	                                           too, for values written elsewhere. Duplicates are
//	                                           dropped and the ids sorted, so the same set always
//	                                           yields the same execution.
//	                                           e.g. "1234567890123456 2345678901234567"
//	databricks:use-cases                       MANAGED_SERVICES (the default when absent), STORAGE, or
//	                                           both ("MANAGED_SERVICES STORAGE", same separators).
//	                                           Case-insensitive; "managed-services" is accepted.
//	databricks:reuse-key-for-cluster-volumes   true | false. Only with STORAGE: whether Databricks
//	                                           also encrypts cluster EBS volumes with the key. Absent
//	                                           leaves the decision to the state machine's default.
//	databricks:dry-run                         true | false (default false). true plans the rotation
//	                                           and publishes the plan without changing a workspace.
//
// A tag under the prefix with an invalid value makes the event unusable: the handler logs the tag,
// its value and what is wrong with it, and starts nothing. Fix the tag; the TagResource call that
// fixes it is itself an event that starts the rotation.
//
// # Events
//
//   - CloudTrail CreateKey whose request tags carry the workspace tag: start, for the new key.
//   - CloudTrail TagResource adding any tag under the prefix: read the key's current tags (the
//     event only carries the added ones) and start if the workspace tag is there.
//   - CloudTrail CreateAlias / UpdateAlias for an alias under ALIAS_PREFIX (default
//     "alias/databricks/"): read the target key's tags and start with key_alias set; an alias
//     pointing at a key without the workspace tag is ignored.
//   - Key material rotation (native "KMS CMK Rotation", CloudTrail RotateKeyOnDemand, service event
//     RotateKey): the key ARN does not change, so Databricks needs nothing. The handler publishes a
//     "Key Material Rotated" audit event and starts nothing.
//   - ScheduleKeyDeletion, DisableKey, key deletion and imported material expiry are the key
//     guard's business and are ignored here, as are failed calls, calls made by
//     IGNORED_PRINCIPAL_ARNS (the rotator's own roles, to avoid loops), and anything unknown.
//
// # Delivery and idempotency
//
// EventBridge invokes the function asynchronously, so one event can arrive up to three times. The
// execution name is derived from the key ARN, the workspace set and the event id, and the input is
// byte-identical for the same event, so a redelivery while the execution is open is the same start
// for Step Functions, and after it closed it is ExecutionAlreadyExists, which counts as success.
// An event the handler cannot use is logged and acknowledged (nil), never returned as an error: it
// would only be retried. AWS failures are returned so that they are retried (throttling, 5xx) or
// land in the function's failure destination (AccessDenied, which needs an operator).
//
// The function handles the events of its own region: EventBridge rules and KMS keys are regional,
// and the KMS client that reads tags is built for the function's region.
package trigger
