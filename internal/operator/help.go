package operator

const mainHelp = `cmkrotate starts and follows the rotation of Databricks workspaces onto a new customer-managed
KMS key, run by the rotation state machine.

Usage:
  cmkrotate start  --workspace ID --key-arn ARN [flags]   start a rotation (or: start --input FILE)
  cmkrotate plan   --workspace ID --key-arn ARN [flags]   dry run: what a rotation would stop, changing nothing
  cmkrotate status EXECUTION                              one progress snapshot; for a request, each workspace's child execution
  cmkrotate watch  EXECUTION                              follow an execution until it ends
  cmkrotate list   [--max N] [--status STATUS]            recent executions, newest first
  cmkrotate rollback EXECUTION [--watch] [--print]        move that execution's workspaces back to their previous key
  cmkrotate keys   [--max-age-days N] [--json]             every workspace's keys, since when, and which are too old
  cmkrotate approve EXECUTION                             let a rotation waiting for approval proceed
  cmkrotate reject  EXECUTION --reason TEXT               refuse it; nothing is locked or stopped

EXECUTION is an execution ARN, or an execution name together with --state-machine.

Environment:
  ROTATOR_STATE_MACHINE_ARN   the rotation state machine, when --state-machine is not given
  ROTATOR_WORKSPACE_STATE_MACHINE_ARN
                              status: the children's state machine, when the request's history does not name it
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_SFN and the rest of the standard AWS configuration chain
                              (calls go to the region in the state machine or execution ARN)

Exit codes:
  0  done: started, or the execution succeeded (or is still running, for status)
  1  failed: an AWS call failed, or the execution did not succeed (a failed workspace included)
  2  usage: the command line or the input is wrong; nothing was started

Run 'cmkrotate COMMAND --help' for the flags of a command.
`

const requestFlagsHelp = `Input (either flags or --input):
  --workspace ID                        workspace to rotate; repeat it, or separate ids with commas
  --key-arn ARN                         the new key: arn:aws:kms:<region>:<account>:key/<key-id> or an alias ARN
  --alias alias/NAME                    the key's alias, recorded in the plan and the events
  --use-cases LIST                      MANAGED_SERVICES (default), STORAGE, or MANAGED_SERVICES,STORAGE
  --no-reuse-key-for-cluster-volumes    with STORAGE: do not encrypt cluster EBS volumes with the key
  --input FILE                          a state machine input JSON document; - reads stdin

The input is validated offline first, as the state machine's Validate task does (workspace ids,
key ARN form, use cases); every problem is printed and nothing starts (exit 2). Workspace state, the
key and its policy are checked by Validate itself.

Other flags:
  --name NAME                           execution name (default: cmkrotate-[plan-]<UTC time>-<input hash>)
  --state-machine ARN                   default: $ROTATOR_STATE_MACHINE_ARN
`

const startHelp = `Usage: cmkrotate start --workspace ID [--workspace ID ...] --key-arn ARN [flags]
       cmkrotate start --input FILE [flags]

Starts a rotation and prints its execution ARN and console URL. With --watch, follows it until it
ends and exits 1 if it did not succeed.

` + requestFlagsHelp + `  --watch                               follow the execution until it ends
  --emergency                           skip the maintenance window (and the approval, unless the
                                        rotation policy requires it for emergencies)
`

const planHelp = `Usage: cmkrotate plan --workspace ID [--workspace ID ...] --key-arn ARN [flags]
       cmkrotate plan --input FILE [flags]

Starts a dry run (dry_run: true: validation and inventory only, nothing is stopped or changed),
follows it, and prints per workspace what a rotation would stop and whether it would come back.
Exits 1 if the dry run failed or could not plan a workspace.

` + requestFlagsHelp

const statusHelp = `Usage: cmkrotate status EXECUTION [--state-machine ARN] [--workspace-state-machine ARN]

Prints one snapshot of an execution: status, elapsed time, the current state of each workspace and
its phase (validating, registering key, planning, stopping compute, updating workspace, verifying,
quiet window, restarting, restarting after failure, reporting), a retry in progress, what is
stopped, and once it has ended the outcome per workspace or the error and cause. Exits 1 if the
execution ended without succeeding (or a workspace ended FAILED or ROTATED_COMPUTE_DOWN).

For a request, it also follows each workspace of the plan into its child execution (named
<workspace id>-<MD5 of the request's name>): one row per workspace, sorted by id, with the child's
name, status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, or "not started" while the Map waits
under its concurrency), the last state it entered, and its outcome once done; or one line saying why
there is none yet (awaiting approval, a dry run). It reads each child with DescribeExecution and the
tail of its history (at most 4 calls per workspace), and exits 1 if a child could not be read.
Given a child's ARN, it shows that child.

EXECUTION is an execution ARN, or an execution name with --state-machine.

Flags:
  --state-machine ARN             resolves an execution name (default: $ROTATOR_STATE_MACHINE_ARN)
  --workspace-state-machine ARN   the children's state machine when the request's history does not
                                  name it in its RotateWorkspace task parameters (as AWS records
                                  them; the local engine does not) (default:
                                  $ROTATOR_WORKSPACE_STATE_MACHINE_ARN)
`

const watchHelp = `Usage: cmkrotate watch EXECUTION [--state-machine ARN] [--workspace-state-machine ARN]

Follows an execution until it ends, polling every 1 to 5 seconds, and shows what status shows. On a
terminal the display is redrawn in place; otherwise one line is printed per change (for CI logs).
Exits 0 if the execution succeeded and 1 otherwise. Interrupting the watch does not stop the execution.

For a request, each workspace whose child execution runs shows the state the child is at and its
phase ("child at StopCompute (stopping compute)"), read from the tail of the child's history: one
call per running child and poll (at most MaxConcurrentWorkspaces run at once). A child that cannot
be read keeps the request's line, with the error code.

EXECUTION is an execution ARN, or an execution name with --state-machine.

Flags:
  --state-machine ARN             resolves an execution name (default: $ROTATOR_STATE_MACHINE_ARN)
  --workspace-state-machine ARN   the children's state machine when the request's history does not
                                  name it (default: $ROTATOR_WORKSPACE_STATE_MACHINE_ARN)
`

const listHelp = `Usage: cmkrotate list [--max N] [--status STATUS] [--state-machine ARN]

Lists recent executions, newest first: name, status, start, duration, workspaces and outcome.

Flags:
  --max N               how many executions (default 20, at most 1000)
  --status STATUS       only RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE
  --state-machine ARN   default: $ROTATOR_STATE_MACHINE_ARN
`

const rollbackHelp = `Usage: cmkrotate rollback EXECUTION [--watch] [--print] [--state-machine ARN]

Reads EXECUTION's history for each workspace it rotated and that workspace's previous managed
services key configuration and key, and starts a rotation back to it through the same state
machine (locks, validation, compensation), one execution per previous key configuration, named
rollback-<execution>-<hash> so that running it twice starts nothing new.

The input carries rollback_of; Validate then refuses it before anything is stopped when the previous
key is no longer usable (disabled, pending deletion: KeyNotUsable) or a workspace is no longer on the
configuration EXECUTION set, because a later rotation happened since (RollbackRefused). The previous
key configuration is reused as it is. A storage key is never rolled back (Databricks cannot replace
one on a running workspace).

  --watch                               follow each rollback until it ends
  --print                               print the inputs (for the console) and start nothing
  --state-machine ARN                   default: $ROTATOR_STATE_MACHINE_ARN (needed with an execution name)
`

const keysHelp = `Usage: cmkrotate keys [--max-age-days N] [--json] [--state-machine ARN]

Lists every workspace of the Databricks account with its managed services and storage key
configurations, key ARN, alias (from KMS, else as registered), and since when it has used each: the
latest succeeded rotation onto it in the rotation state machine's history, else the key
configuration's creation time (an upper bound on the age). Keys used for longer than the maximum age
are marked EXCEEDED; the scheduled KeyAgeCheck function publishes "Key Age Exceeded" for the same.

  --max-age-days N                      default: $MAX_KEY_AGE_DAYS, else 365
  --json                                the report as JSON
  --state-machine ARN                   default: $ROTATOR_STATE_MACHINE_ARN; without one, no history is read

Databricks: DATABRICKS_HOST, DATABRICKS_ACCOUNT_ID and DATABRICKS_SECRET_ARN (Secrets Manager), or
DATABRICKS_TOKEN / DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET locally.
`

const approveHelp = `Usage: cmkrotate approve EXECUTION [--reason TEXT] [--state-machine ARN]

Answers the approval request of a rotation in approval mode (it published Rotation Awaiting Approval
with the plan): the execution re-checks the policy, waits for its maintenance window if it has one,
then locks, validates again and rotates. A workspace whose keys changed meanwhile (an emergency
rotation ran) is refused as superseded.

Needs states:GetExecutionHistory on the execution (the task token is in its history) and
states:SendTaskSuccess, which IAM cannot scope to a resource: see the README's threat model.
`

const rejectHelp = `Usage: cmkrotate reject EXECUTION --reason TEXT [--state-machine ARN]

Refuses a rotation waiting for approval: it ends with ApprovalRejected and a Rotation Rejected event
carrying the reason. Nothing was locked or stopped. Needs states:SendTaskFailure.
`
