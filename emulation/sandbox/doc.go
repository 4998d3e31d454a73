// Package sandbox is the process plumbing of the local sandbox: it runs local-kms, serves Lambda
// functions from their bootstrap binaries under aws-lambda-rie, and runs state machine executions
// in the Node engine (emulation/sandbox/engine.mjs, aws-local-stepfunctions) as an awsfake.Runner.
// It knows nothing of the rotator's business logic; composing the pieces is the caller's job.
//
// Everything binds 127.0.0.1 except local-kms, which can only listen on 0.0.0.0 (callers still
// talk to it on 127.0.0.1). Child processes get only PATH, HOME and TMPDIR from the parent's
// environment, run in their own process group, and are stopped with it.
package sandbox
