// The two optimized service integrations the rotation workflow uses, sent to the local AWS
// endpoint (emulation/awsfake) over the AWS JSON protocols.
import { SandboxFault, TaskError } from './errors.mjs';

const SERVICES = {
  events: { targetPrefix: 'AWSEvents', contentType: 'application/x-amz-json-1.1', errorPrefix: 'EventBridge', name: 'AmazonEventBridge' },
  states: { targetPrefix: 'AWSStepFunctions', contentType: 'application/x-amz-json-1.0', errorPrefix: 'StepFunctions', name: 'AWSStepFunctions' },
  // The engine's side of .waitForTaskToken in emulation/awsfake (no AWS service has these targets).
  sandbox: { targetPrefix: 'Sandbox', contentType: 'application/x-amz-json-1.0', errorPrefix: 'Sandbox', name: 'Sandbox' },
};

/**
 * Calls one operation. An AWS error answer becomes the error an optimized integration raises:
 * "<Service>.<Code>Exception" (e.g. StepFunctions.ExecutionAlreadyExistsException), with a Cause
 * shaped like the AWS SDK for Java message Step Functions shows.
 */
async function call(endpoint, service, operation, body) {
  const svc = SERVICES[service];
  if (!endpoint) {
    throw new SandboxFault('Sandbox.NoAwsEndpoint', `${svc.targetPrefix}.${operation} needs "aws_endpoint" in the job`);
  }
  let res;
  let text;
  try {
    res = await fetch(new URL('/', endpoint), {
      method: 'POST',
      headers: { 'Content-Type': svc.contentType, 'X-Amz-Target': `${svc.targetPrefix}.${operation}` },
      body: JSON.stringify(body),
    });
    text = await res.text();
  } catch (err) {
    throw new SandboxFault('Sandbox.AwsEndpointUnreachable', `${svc.targetPrefix}.${operation} at ${endpoint}: ${err.cause?.message ?? err.message}`);
  }
  let parsed = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    throw new SandboxFault('Sandbox.BadAwsResponse', `${svc.targetPrefix}.${operation}: HTTP ${res.status}, body is not JSON: ${text.slice(0, 500)}`);
  }
  if (res.ok) return parsed;

  // __type may carry a namespace ("com.amazonaws...#Code") or a suffix after ':'.
  const rawCode = res.headers.get('x-amzn-errortype') ?? parsed.__type ?? 'UnknownError';
  const code = rawCode.split(':')[0].split('#').pop();
  const requestId = res.headers.get('x-amzn-requestid') ?? '';
  const message = parsed.message ?? parsed.Message ?? '';
  const name = `${svc.errorPrefix}.${code.endsWith('Exception') ? code : `${code}Exception`}`;
  throw new TaskError(name, `${message} (Service: ${svc.name}; Status Code: ${res.status}; Error Code: ${code}; Request ID: ${requestId}; Proxy: null)`);
}

/**
 * arn:aws:states:::events:putEvents. As the real integration does, a Detail object is sent as its
 * JSON text and the execution and state machine ARNs are appended to each entry's Resources;
 * a response with FailedEntryCount > 0 fails the task with EventBridge.FailedEntry.
 */
export async function putEvents(endpoint, params, context) {
  if (!Array.isArray(params?.Entries)) {
    throw new TaskError('States.Runtime', 'events:putEvents needs Parameters.Entries to be an array');
  }
  const appended = [context?.Execution?.Id, context?.StateMachine?.Id].filter(Boolean);
  const entries = params.Entries.map((entry) => {
    const out = { ...entry };
    if (entry.Detail !== undefined && typeof entry.Detail !== 'string') out.Detail = JSON.stringify(entry.Detail);
    if (appended.length) out.Resources = [...(entry.Resources ?? []), ...appended];
    return out;
  });
  const result = await call(endpoint, 'events', 'PutEvents', { Entries: entries });
  if ((result.FailedEntryCount ?? 0) > 0) {
    throw new TaskError('EventBridge.FailedEntry', JSON.stringify(result));
  }
  return result;
}

/** arn:aws:states:::states:startExecution (request-response). */
export async function startExecution(endpoint, params) {
  if (typeof params?.StateMachineArn !== 'string') {
    throw new TaskError('States.Runtime', 'states:startExecution needs Parameters.StateMachineArn');
  }
  const body = { stateMachineArn: params.StateMachineArn };
  if (params.Name !== undefined) body.name = params.Name;
  if (params.Input !== undefined) body.input = typeof params.Input === 'string' ? params.Input : JSON.stringify(params.Input);
  if (params.TraceHeader !== undefined) body.traceHeader = params.TraceHeader;
  const result = await call(endpoint, 'states', 'StartExecution', body);
  // The integration reports StartDate as epoch milliseconds (the API itself uses epoch seconds).
  return { ExecutionArn: result.executionArn, StartDate: Math.round(Number(result.startDate) * 1000) };
}

/**
 * arn:aws:states:::states:startExecution.sync (and .sync:2): starts the child execution, then polls
 * DescribeExecution until it closes, as Step Functions does for the "Run a Job" pattern. The result
 * is the DescribeExecution answer with Step Functions' capitalised keys; with .sync:2 the child's
 * Input and Output are parsed JSON, with .sync they stay JSON text. A child that ends FAILED,
 * TIMED_OUT or ABORTED fails the task with States.TaskFailed and that answer as the Cause, which is
 * what a Catch on the parent's Task receives in AWS. pollMs is how often the child is described.
 */
const runningChildren = new Set();

/**
 * Stops every child a .sync task is still waiting for, as Step Functions does when the parent
 * execution is stopped, times out or fails: the engine calls it when its execution ends otherwise
 * than SUCCEEDED. A child that already ended answers with an error, which is ignored.
 */
export async function stopRunningChildren(endpoint, cause) {
  const arns = [...runningChildren];
  runningChildren.clear();
  await Promise.allSettled(arns.map((executionArn) => call(endpoint, 'states', 'StopExecution', { executionArn, cause })));
}

export async function startExecutionSync(endpoint, params, { parseJson, pollMs = 100 } = {}) {
  const started = await startExecution(endpoint, params);
  runningChildren.add(started.ExecutionArn);
  try {
    return await pollChild(endpoint, started, parseJson, pollMs);
  } finally {
    runningChildren.delete(started.ExecutionArn);
  }
}

async function pollChild(endpoint, started, parseJson, pollMs) {
  for (;;) {
    const d = await call(endpoint, 'states', 'DescribeExecution', { executionArn: started.ExecutionArn });
    if (d.status !== 'RUNNING' && d.status !== 'PENDING_REDRIVE') {
      const json = (text) => (parseJson && typeof text === 'string' ? JSON.parse(text) : text);
      const result = {
        ExecutionArn: d.executionArn, StateMachineArn: d.stateMachineArn, Name: d.name, Status: d.status,
        StartDate: Math.round(Number(d.startDate) * 1000), StopDate: Math.round(Number(d.stopDate) * 1000),
        Input: json(d.input), InputDetails: { Included: true },
      };
      if (d.status === 'SUCCEEDED') {
        result.Output = json(d.output ?? 'null');
        result.OutputDetails = { Included: true };
        return result;
      }
      if (d.error !== undefined) result.Error = d.error;
      if (d.cause !== undefined) result.Cause = d.cause;
      throw new TaskError('States.TaskFailed', JSON.stringify(result));
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs).unref());
  }
}

/**
 * The callback pattern (.waitForTaskToken): registers the token (awsfake records the TaskScheduled
 * history event with the resolved Parameters, where an approver finds it, as in AWS), runs the
 * request-response part, then waits until SendTaskSuccess or SendTaskFailure answers the token. The
 * state's TimeoutSeconds(Path) is enforced by the engine around this promise.
 */
export async function waitForTaskToken(endpoint, context, stateName, resource, params, invoke) {
  const token = context?.Task?.Token;
  if (!token) throw new SandboxFault('Sandbox.NoTaskToken', `${stateName}: the job context has no Task.Token`);
  await call(endpoint, 'sandbox', 'RegisterTaskToken', {
    executionArn: context?.Execution?.Id, taskToken: token, stateName, resource, parameters: JSON.stringify(params),
  });
  await invoke();
  for (;;) {
    const r = await call(endpoint, 'sandbox', 'TaskTokenResult', { taskToken: token });
    if (r.status === 'SUCCEEDED') return JSON.parse(r.output);
    if (r.status === 'FAILED') throw new TaskError(r.error || 'States.TaskFailed', r.cause ?? '');
    await new Promise((resolve) => setTimeout(resolve, 100).unref());
  }
}
