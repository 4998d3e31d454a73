// Package rescue reports and unlocks what a rotation execution left behind when it ended in a way
// no Catch in statemachine/rotation.asl.json can handle.
//
// # Why
//
// Every failure inside a workspace iteration is caught, compensated for and reported. Some endings
// are not: an operator's StopExecution (ABORTED), the execution's TimeoutSeconds (TIMED_OUT), and
// the errors no Catch matches (States.Runtime, States.DataLimitExceeded: FAILED). The execution
// then stops where it is, possibly after StopCompute, with no event saying what is down, and the
// workspace locks stay in DynamoDB until their lease expires (5 h), so the next rotation of those
// workspaces is refused as busy.
//
// # What
//
// The rescue function receives the "Step Functions Execution Status Change" events of the rotation
// state machine whose status is FAILED, TIMED_OUT or ABORTED (the rule on the default bus says so;
// ParseEvent checks it again and ignores anything else). It confirms with DescribeExecution that the
// execution is still closed (a redriven execution runs again and will report for itself; it runs
// without the locks released below, so its StopCompute and PatchWorkspace take the workspace's lock
// again first, or refuse with WorkspaceBusy: wslock.Guard, and the iteration then ends in LockLost
// without Compensate; TestARedrivenExecutionWhoseLockWasTakenRefusesWithoutTouchingTheWorkspace in
// emulation/rig), reads the
// whole execution history, and rebuilds each workspace's iteration from it:
//
//   - every state input and output of an iteration is the workspace's run (rotation.WorkspaceRun,
//     which names the workspace) or, for the Pass state that ends the iteration, its outcome
//     ({workspace_id, outcome}). Events are attributed by that content rather than by following
//     previousEventId back to MapIterationStarted, which works the same whether the Map ran the
//     iterations one at a time or interleaved;
//   - tasks only add keys to the run, so the latest run of a workspace is its last known state:
//     $.inventory (inline, or a reference to S3), $.stop, $.restart_status, $.patch...;
//   - an iteration has ended when a state output its outcome, and has reported when one of its
//     Publish* states exited without a publish_error.
//
// Then, per workspace of the request:
//
//   - the iteration ended (or reported) normally: nothing; its own event says what happened;
//   - it ended FAILED without being able to publish its Rotation Failed event (both PublishFailure
//     and PublishRawFailure refused): the rescue publishes that report, built by internal/report
//     from the last run, since nobody else will;
//   - compute was stopped, or StopCompute had started (it may have stopped some before the
//     execution ended, without $.stop recorded), and the iteration did not finish: one
//     "Rotation Failed" event with phase aborted / timed-out / runtime-error, the execution's error
//     and cause, compute_stopped true, still_down_unknown true (unless a restart check had already
//     completed: then its still_down), and the inventory: inline when it is small (a reference is
//     loaded from S3 for that), else the reference and its counts;
//   - nothing was stopped (the iteration had not reached StopCompute, or never started because the
//     execution ended before the Map or while the Map held it back): one "Rotation Failed" event
//     per workspace with compute_stopped false, saying the workspace is unchanged. One event per
//     workspace rather than one for all, so that every Rotation Failed event names one
//     workspace_id, as consumers of the state machine's own events expect;
//   - a dry run, or a request already answered by a Rotation Rejected event, gets no event: nothing
//     was or could have been stopped.
//
// Finally it releases the execution's workspace locks: the owner is the execution name, the
// workspaces those of the execution input (and of the LockWorkspaces output in the history).
// wslock deletes only items that execution owns, so another execution's lock is never touched and a
// second release is harmless.
//
// # Idempotency and ordering
//
// EventBridge may deliver the status change twice, and a returned error is retried. Every event
// the rescue publishes carries event_id, derived from the execution ARN, its redrive count and the
// workspace id, and execution_arn: a repeated delivery publishes the same ids, and consumers
// deduplicate on event_id. The events are published before the locks are released, so that a lock
// is never freed (and a new rotation allowed) before the event saying what is still down was
// accepted: a new rotation restarts only compute that is running when it begins.
//
// # Failures
//
// An event the rescue cannot use is logged with the reason and acknowledged (nil). A failed
// DescribeExecution, GetExecutionHistory, PutEvents or DeleteItem is returned, so that the
// asynchronous invocation is retried and, after the retries, lands in the function's failure queue
// (which raises an alarm). A stored inventory that cannot be read is not a failure: the event then
// carries its reference and counts, which is what a person needs to find it.
package rescue
