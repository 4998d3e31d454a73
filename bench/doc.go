// Package bench holds the benchmarks behind `make bench`: stop/restart throughput against the
// Databricks fake's latency and rate limit, the speedup over one-call-at-a-time and over a
// CLI-style script, the downtime a real rotation adds to Databricks' own delays, state
// transitions and their cost, cold starts, binary sizes and peak memory of the real bootstraps,
// and the large-inventory and many-workspace scenarios at full scale.
//
// The benchmarks are test functions behind the `bench` build tag, so `go test ./...` and CI never
// run them. `make bench` builds what they need, runs them, prints one `BENCH <name> <value> <unit>`
// line per figure and writes RESULTS.md here.
package bench
