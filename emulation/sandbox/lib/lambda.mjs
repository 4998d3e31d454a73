// Invoking a Lambda function served by aws-lambda-rie (or by the Go sandbox's proxy in front of
// it) and turning its answer into what Step Functions would see.
//
// What the emulator answers (aws-lambda-rie built from tools/go.mod, checked by hand and pinned by
// emulation/sandbox tests):
//   success            200, body = the handler's JSON result
//   function error     200, body = {"errorMessage": "...", "errorType": "<Go type name>"}
//                      (no X-Amz-Function-Error header, unlike the real Invoke API)
//   timeout            200, text/plain body "Task timed out after N.00 seconds"; the runtime is
//                      SIGKILLed and re-initialised on the next invoke
//   crash (exit)       502, body = {"errorType":"Runtime.ExitError","errorMessage":"RequestId: <id>
//                      Error: Runtime exited with error: exit status N"}
//   concurrent invoke  the emulator panics (nil pointer in rapidcore.(*Server).Invoke) and exits:
//                      it serves exactly one invocation at a time, hence the per-URL queue below.
// AWS reports a timeout as errorType "Sandbox.Timedout" with errorMessage
// "RequestId: <id> Error: Task timed out after N.00 seconds", and a crash as "Runtime.ExitError";
// the Go proxy (emulation/sandbox) already answers in that form with X-Amz-Function-Error set, and
// this module accepts both forms.
import { randomUUID } from 'node:crypto';
import { SandboxFault, TaskError } from './errors.mjs';

const tails = new Map(); // url -> promise that settles when the url's last queued call is done
const pending = new Map(); // url -> number of calls queued or running

/** Runs fn after every call already queued for url, so the emulator never sees two at once. */
function enqueue(url, fn) {
  const prev = tails.get(url) ?? Promise.resolve();
  pending.set(url, (pending.get(url) ?? 0) + 1);
  const run = prev.then(fn);
  const tail = run.then(
    () => {},
    () => {},
  ).finally(() => pending.set(url, pending.get(url) - 1));
  tails.set(url, tail);
  return run;
}

/** Picks the least busy instance of a pool (a single URL is a pool of one). */
function pickUrl(urls) {
  return urls.reduce((best, url) => ((pending.get(url) ?? 0) < (pending.get(best) ?? 0) ? url : best));
}

const TIMEOUT_TEXT = /^Task timed out after [0-9.]+ seconds$/;

function isErrorPayload(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.errorType === 'string' && 'errorMessage' in v;
}

/**
 * POSTs payload to one of urls and returns the function's result. A function error is thrown as a
 * TaskError named after its errorType whose message (the Cause) is the error JSON, as AWS does.
 */
export function invokeLambda(functionArn, urls, payload) {
  const url = pickUrl(urls);
  return enqueue(url, () => invokeOnce(functionArn, url, payload));
}

async function invokeOnce(functionArn, url, payload) {
  const requestId = randomUUID();
  let res;
  let text;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Amzn-RequestId': requestId },
      body: JSON.stringify(payload ?? null),
    });
    text = await res.text();
  } catch (err) {
    throw new SandboxFault('Sandbox.LambdaUnreachable', `invoke ${functionArn} at ${url}: ${err.cause?.message ?? err.message}`);
  }

  if (res.status === 200 && TIMEOUT_TEXT.test(text.trim())) {
    const body = { errorType: 'Sandbox.Timedout', errorMessage: `RequestId: ${requestId} Error: ${text.trim()}` };
    throw new TaskError(body.errorType, JSON.stringify(body));
  }
  let parsed;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    throw new SandboxFault('Sandbox.BadLambdaResponse', `invoke ${functionArn}: HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 500)}`);
  }
  const flagged = res.headers.get('x-amz-function-error') !== null;
  // The emulator answers a function error with 200 and a crash with 502; the real Invoke API
  // (and the Go proxy) answers both with 200 and X-Amz-Function-Error. The payload decides.
  if ((res.status === 200 || res.status === 502) && isErrorPayload(parsed)) {
    throw new TaskError(parsed.errorType, text);
  }
  if (res.status === 200 && !flagged) return parsed;
  throw new SandboxFault('Sandbox.BadLambdaResponse', `invoke ${functionArn}: HTTP ${res.status}: ${text.slice(0, 500)}`);
}

/**
 * Finds the URLs for a FunctionName as the lambda:invoke integration accepts it: a function ARN,
 * a partial ARN, or a bare name, optionally with a :qualifier.
 */
export function resolveFunction(lambdas, functionName) {
  if (lambdas[functionName]) return { arn: functionName, urls: lambdas[functionName] };
  const bare = (s) => {
    const m = /(?:^|:function:)([A-Za-z0-9_-]+)(?::[^:]+)?$/.exec(s);
    return m ? m[1] : s;
  };
  const want = bare(functionName);
  for (const [arn, urls] of Object.entries(lambdas)) {
    if (bare(arn) === want) return { arn, urls };
  }
  return undefined;
}

/** The arn:aws:states:::lambda:invoke integration: {FunctionName, Payload} -> Invoke's answer. */
export async function lambdaInvokeIntegration(lambdas, params) {
  const target = resolveFunction(lambdas, params?.FunctionName ?? '');
  if (!target) {
    throw new SandboxFault('Sandbox.UnknownFunction', `lambda:invoke FunctionName ${JSON.stringify(params?.FunctionName)} is not one of the sandbox's functions: ${Object.keys(lambdas).join(', ')}`);
  }
  if (params.InvocationType && params.InvocationType !== 'RequestResponse') {
    throw new SandboxFault('Sandbox.Unsupported', `lambda:invoke InvocationType ${params.InvocationType} is not supported by the sandbox`);
  }
  const payload = await invokeLambda(target.arn, target.urls, params.Payload);
  return {
    ExecutedVersion: '$LATEST',
    Payload: payload,
    SdkHttpMetadata: { HttpStatusCode: 200 },
    SdkResponseMetadata: { RequestId: randomUUID() },
    StatusCode: 200,
  };
}
