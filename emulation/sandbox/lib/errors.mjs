// Errors thrown from Task handlers. aws-local-stepfunctions matches Retry/Catch ErrorEquals
// against `error.name`, puts `error.message` into a Catch's Cause, and reports
// `error.cause ?? error.message` on StateFailed/ExecutionFailed events. So a task error carries
// the Step Functions error name in `name` and the exact Cause text AWS would show in `message`,
// and never sets `cause`.

/** A task failure as Step Functions would report it: retryable and catchable. */
export class TaskError extends Error {
  constructor(name, cause) {
    super(cause);
    this.name = name;
  }
}

/**
 * A failure of the sandbox itself (a Lambda emulator that died, an endpoint that is down, a
 * response no AWS service would give). It must not be mistaken for a business failure, so the
 * engine may neither retry nor catch it: the execution fails at once with this name.
 */
export class SandboxFault extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
    // Read by aws-local-stepfunctions' StateExecutor (`error.isRetryable ?? true`).
    this.isRetryable = false;
    this.isCatchable = false;
  }
}

/** Thrown before the run starts: a bad job, an unsupported resource, a bad override. */
export class JobError extends Error {
  constructor(message) {
    super(message);
    this.name = 'JobError';
  }
}
