// Runs ONE execution of an ASL definition in aws-local-stepfunctions, with every Task served by
// the sandbox: Lambda ARNs by their function under aws-lambda-rie, events:putEvents and
// states:startExecution (request-response, .sync and .sync:2) by the local AWS endpoint.
//
//   node emulation/sandbox/engine.mjs < job.json
//
// stdout: one JSON line per engine event, then {"type":"Result",...}. Exit 0 whenever the Result
// line was written (whatever the execution's status); exit 1 with a message on stderr when the
// job cannot run (bad job, invalid definition, a Task resource the sandbox does not serve).
// See emulation/sandbox/README.md for the job format.
import { randomUUID } from 'node:crypto';
import { StateMachine, ExecutionAbortedError, ExecutionError, ExecutionTimeoutError } from 'aws-local-stepfunctions';
import { expandOverrides, statesByName } from './lib/asl.mjs';
import { JobError, SandboxFault } from './lib/errors.mjs';
import { invokeLambda, lambdaInvokeIntegration } from './lib/lambda.mjs';
import { putEvents, startExecution, startExecutionSync, stopRunningChildren, waitForTaskToken } from './lib/aws.mjs';

const PUT_EVENTS = 'arn:aws:states:::events:putEvents';
const START_EXECUTION = 'arn:aws:states:::states:startExecution';
// Nested executions waited for: .sync keeps the child's Input/Output as JSON text, .sync:2 parses them.
const START_EXECUTION_SYNC = 'arn:aws:states:::states:startExecution.sync';
const START_EXECUTION_SYNC2 = 'arn:aws:states:::states:startExecution.sync:2';
const LAMBDA_INVOKE = 'arn:aws:states:::lambda:invoke';
const LAMBDA_INVOKE_WAIT = 'arn:aws:states:::lambda:invoke.waitForTaskToken';

// AWS's default Task timeout is 99999999 s; the engine's is 60 s, and Node timers overflow past
// 2^31-1 ms (they would fire at once). The longest timer Node can hold stands in for "no timeout".
const MAX_TASK_TIMEOUT_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJob(text) {
  let job;
  try {
    job = JSON.parse(text);
  } catch (err) {
    throw new JobError(`job on stdin is not JSON: ${err.message}`);
  }
  if (typeof job?.definition !== 'object' || job.definition === null) throw new JobError('job.definition must be the ASL definition object');
  const lambdas = {};
  for (const [arn, urls] of Object.entries(job.lambdas ?? {})) {
    const list = Array.isArray(urls) ? urls : [urls];
    if (list.length === 0 || !list.every((u) => typeof u === 'string' && u !== '')) {
      throw new JobError(`job.lambdas["${arn}"] must be an invoke URL or a non-empty array of them`);
    }
    lambdas[arn] = list;
  }
  // One task token per execution stands in for Step Functions' per-task tokens: the rotation has a
  // single callback state (AwaitApproval).
  const context = { ...(job.context ?? {}) };
  if (!context.Task?.Token) context.Task = { Token: `sandbox-token-${randomUUID()}` };
  return { ...job, input: job.input ?? {}, context, lambdas };
}

/** Builds a handler for every Task state; refuses the job if any Task has no local meaning. */
function taskHandlers(byName, job) {
  const handlers = {};
  const unsupported = [];
  for (const [name, state] of byName) {
    if (state.Type !== 'Task') continue;
    const resource = state.Resource;
    if (job.lambdas[resource]) {
      const urls = job.lambdas[resource];
      handlers[name] = (input) => invokeLambda(resource, urls, input);
    } else if (resource === LAMBDA_INVOKE) {
      handlers[name] = (input) => lambdaInvokeIntegration(job.lambdas, input);
    } else if (resource === LAMBDA_INVOKE_WAIT) {
      handlers[name] = (input) =>
        waitForTaskToken(job.aws_endpoint, job.context, name, resource, input, () => lambdaInvokeIntegration(job.lambdas, input));
    } else if (resource === PUT_EVENTS) {
      handlers[name] = (input) => putEvents(job.aws_endpoint, input, job.context);
    } else if (resource === START_EXECUTION) {
      handlers[name] = (input) => startExecution(job.aws_endpoint, input);
    } else if (resource === START_EXECUTION_SYNC || resource === START_EXECUTION_SYNC2) {
      const parseJson = resource === START_EXECUTION_SYNC2;
      handlers[name] = (input) => startExecutionSync(job.aws_endpoint, input, { parseJson });
    } else {
      unsupported.push(`${name}: ${resource}`);
    }
  }
  if (unsupported.length) {
    throw new JobError(
      `the sandbox cannot serve these Task resources (a Lambda ARN must be a key of job.lambdas; ` +
        `supported integrations: ${[LAMBDA_INVOKE, LAMBDA_INVOKE_WAIT, PUT_EVENTS, START_EXECUTION, START_EXECUTION_SYNC, START_EXECUTION_SYNC2].join(', ')}):\n  ${unsupported.join('\n  ')}`,
    );
  }
  return handlers;
}

/** Gives every Task without a timeout the longest one Node can hold (see MAX_TASK_TIMEOUT_SECONDS). */
function withAwsTaskTimeouts(byName) {
  for (const state of byName.values()) {
    if (state.Type !== 'Task' || state.TimeoutSecondsPath !== undefined) continue;
    if (state.TimeoutSeconds === undefined || state.TimeoutSeconds > MAX_TASK_TIMEOUT_SECONDS) {
      state.TimeoutSeconds = MAX_TASK_TIMEOUT_SECONDS;
    }
  }
}

function causeText(cause) {
  if (cause === undefined || cause === null) return null;
  if (typeof cause === 'string') return cause;
  if (cause instanceof Error) return cause.message;
  return JSON.stringify(cause);
}

function writeLine(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function eventLine(ev, resources) {
  const line = { ts: ev.timestamp, type: ev.type };
  const state = ev.state ?? ev.parentState;
  if (state) {
    line.state = state.name;
    line.stateType = state.type;
    if (state.type === 'Task') line.resource = resources.get(state.name);
  }
  if (ev.index !== undefined) line.index = ev.index;
  switch (ev.type) {
    case 'ExecutionStarted':
      line.input = ev.input;
      break;
    case 'ExecutionSucceeded':
      line.output = ev.output;
      break;
    case 'StateEntered':
      line.input = ev.state.input;
      break;
    case 'StateExited':
      line.output = ev.state.output ?? null;
      break;
    case 'StateRetried':
      line.attempt = ev.retry.attempt;
      line.errorEquals = ev.retry.retrier.ErrorEquals;
      break;
    case 'StateCaught':
      line.errorEquals = ev.catch.catcher.ErrorEquals;
      line.next = ev.catch.catcher.Next;
      break;
    default:
      break;
  }
  if ('Error' in ev) {
    line.error = ev.Error ?? null;
    line.cause = causeText(ev.Cause);
  }
  return line;
}

async function main() {
  let job;
  let machine;
  let handlers;
  let byName;
  try {
    job = parseJob(await readStdin());
    byName = statesByName(job.definition);
    handlers = taskHandlers(byName, job);
    withAwsTaskTimeouts(byName);
    // The engine times the whole execution with one Node timer too: a TimeoutSeconds past what a
    // timer holds (the request's is about 55 days) would fire at once. No sandbox run lasts that long.
    if (job.definition.TimeoutSeconds > MAX_TASK_TIMEOUT_SECONDS) job.definition.TimeoutSeconds = MAX_TASK_TIMEOUT_SECONDS;
    const waitTimeOverrides = expandOverrides(job.wait_overrides_ms, byName, (s) => s.Type === 'Wait', 'wait');
    const retryIntervalOverrides = expandOverrides(job.retry_overrides_ms, byName, (s) => Array.isArray(s.Retry) && s.Retry.length > 0, 'retry');
    machine = new StateMachine(job.definition, job.validation ? { validationOptions: job.validation } : undefined);
    job.overrides = { taskResourceLocalHandlers: handlers, waitTimeOverrides, retryIntervalOverrides };
  } catch (err) {
    process.stderr.write(`engine: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }

  const resources = new Map([...byName].filter(([, s]) => s.Type === 'Task').map(([n, s]) => [n, s.Resource]));
  const execution = machine.run(job.input, { overrides: job.overrides, context: job.context });
  const abort = () => execution.abort();
  process.once('SIGTERM', abort);
  process.once('SIGINT', abort);

  const pump = (async () => {
    for await (const ev of execution.eventLogs) writeLine(eventLine(ev, resources));
  })();

  const result = { type: 'Result', status: 'SUCCEEDED', output: null, error: null, cause: null };
  try {
    result.output = (await execution.result) ?? null;
  } catch (err) {
    if (err instanceof ExecutionAbortedError) {
      result.status = 'ABORTED';
    } else if (err instanceof ExecutionTimeoutError) {
      result.status = 'TIMED_OUT';
      result.error = 'States.Timeout';
    } else if (err instanceof ExecutionError) {
      const failure = err.cause ?? err;
      result.status = 'FAILED';
      result.error = failure.name ?? 'Error';
      result.cause = causeText(failure instanceof SandboxFault ? failure.message : (failure.cause ?? failure.message));
    } else {
      result.status = 'FAILED';
      result.error = 'Sandbox.EngineError';
      result.cause = err?.stack ?? String(err);
    }
  }
  if (result.status !== 'SUCCEEDED') {
    // Step Functions stops the children a .sync task waits for when their parent ends badly.
    await stopRunningChildren(job.aws_endpoint, `the parent execution ended ${result.status}`);
  }
  // The event log closes with the execution's last event; do not hang on it if it never does.
  await Promise.race([pump, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  result.ts = Date.now();
  // Exit explicitly: a Lambda call abandoned by a States.Timeout would otherwise keep Node alive.
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

await main();
