// Package sdkoverlay holds what the shipped Lambda functions replace in the Databricks SDK, and
// the tests that keep the replacement honest. It has no code of its own: the Makefile copies the
// SDK (the version go.mod requires, from the module cache) into .build/sdk, puts the files of
// _stubs/ over the originals of the same path, and builds every function with
// -modfile=.build/sdk/go.mod, whose replace directive points the SDK at that copy.
//
// Why: every SDK service package the rotator uses links, through config and common/types,
//
//   - config/auth_gcp_google_{credentials,id}.go: GCP credential providers, which import
//     google.golang.org/api, hence gRPC, cloud.google.com/go/auth, OpenCensus and OpenTelemetry
//     (~4.6 MiB a binary, 12-16 ms of package init at every cold start). The rotator never
//     authenticates to GCP (internal/dbclient names oauth-m2m or pat); the stubs keep the types,
//     their names and their place in the default chain, decline exactly when the originals do, and
//     refuse a GCP configuration with an error naming why.
//   - common/types/{time,duration}: wrappers that (un)marshal through protojson. protojson's
//     initialisers make protobuf's descriptor formatting reachable, which calls
//     reflect.Value.MethodByName; the linker then keeps every exported method of every type that
//     may sit in an interface (all ~340 S3 operations, ~170 KMS ones, every SDK service method),
//     3.7-11 MiB a binary. The stubs port protojson's Timestamp and Duration rules to the standard
//     library, with the same API.
//
// `go build -overlay` would have been the natural tool, but the go command refuses to overlay
// files beneath GOMODCACHE, hence the copy. The tests pin the SDK version and the originals'
// SHA-256, so a dependency bump fails here until the stubs are reviewed against the new files; they
// check that the shipped build links neither Google's libraries nor protobuf, and run the SDK's
// own tests of the replaced packages, plus testdata/'s comparison with protojson, against the
// stubs. To ship the unmodified SDK: `make build LAMBDA_MODFILE=go.mod`.
package sdkoverlay
