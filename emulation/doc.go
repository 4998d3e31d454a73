// Package emulation is the root of everything that runs only on a developer's machine or in CI, never
// in AWS: the Databricks fake (dbfake), the local AWS endpoints (awsfake), the sandbox that runs the
// real bootstraps under aws-lambda-rie and the real ASL in aws-local-stepfunctions (sandbox, with
// its Node engine beside the Go code that drives it), the scenario rig (rig), test helpers
// (faketest) and the sandbox command (cmd/rotator-sandbox). No product package imports it:
// TestNoProductPackageImportsTheEmulation keeps it that way.
package emulation
