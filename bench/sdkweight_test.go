//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	databricksSDK = "github.com/databricks/databricks-sdk-go"
	// initRuns is how many times each bootstrap's package initialisation is traced.
	initRuns = 15
)

// benchSDKWeight measures what the shipped build's SDK stubs (build/sdkoverlay: the SDK's GCP
// credential providers, and common/types/{time,duration} without protobuf) save: every function
// that links the Databricks SDK is built a second time, with the same flags, against the
// unmodified SDK (the repository's own go.mod), and both builds' package initialisation is traced
// (GODEBUG=inittrace=1) to see what the difference costs at every cold start.
func benchSDKWeight(t *testing.T, env *environment, rep *report) {
	const title = "5. Cold start and binary size"
	fns := functions(t, env.localDir)
	links := linked(t, env, []string{databricksSDK + "/config"})
	var sdkFns []function
	for _, fn := range fns {
		if len(links[fn.dir]) > 0 {
			sdkFns = append(sdkFns, fn)
		}
	}
	require.NotEmpty(t, sdkFns, "no function links %s/config", databricksSDK)
	unmodified := filepath.Join(env.root, "go.mod")
	work := t.TempDir()
	fnEnv := functionEnv(t)

	rep.note(title, "**What the SDK stubs save** (`binary_mb_unmodified_sdk_<LogicalId>`, `unmodified_sdk_init_ms_<LogicalId>`): "+
		"every function that links the Databricks SDK built a second time, with the same flags, against the unmodified SDK "+
		"(`make build LAMBDA_MODFILE=go.mod`), i.e. with the GCP credential providers and protojson that the shipped build leaves out. "+
		"`unmodified_sdk_init_ms` is the median over %d starts of that build's bootstrap (this machine's build, GODEBUG=inittrace=1, "+
		"the sandbox's environment) of the init time of the packages that the shipped build does not link; `allocs` the same packages' "+
		"allocations (deterministic, unlike the times on a shared machine).", initRuns)
	rep.note(title, "| function | shipped arm64 binary | with the unmodified SDK | saved | init of the packages the stubs leave out (median) | their allocations | all package inits, unmodified (median) |\n|---|---:|---:|---:|---:|---:|---:|")
	var over []string
	for _, fn := range sdkFns {
		shipped, err := os.Stat(filepath.Join(env.armDir, fn.id, "bootstrap"))
		require.NoError(t, err, "run `make build` (NO_SAM=1) for the arm64 binaries")
		armFull := filepath.Join(work, fn.id, "arm64", "bootstrap")
		buildFunction(t, env, unmodified, "arm64", fn.dir, armFull)
		full, err := os.Stat(armFull)
		require.NoError(t, err)
		shippedMiB, fullMiB := float64(shipped.Size())/mib, float64(full.Size())/mib
		rep.figure("binary_mb_unmodified_sdk_"+fn.id, fullMiB, "MB", 1, capped("none; what binary_mb would be without build/sdkoverlay"))

		shippedPkgs := map[string]bool{}
		for pkg := range traceInits(t, filepath.Join(env.localDir, fn.id, "bootstrap"), fnEnv) {
			shippedPkgs[pkg] = true
		}
		localFull := filepath.Join(work, fn.id, runtime.GOARCH, "bootstrap")
		buildFunction(t, env, unmodified, runtime.GOARCH, fn.dir, localFull)
		var extra, total []time.Duration
		allocs := 0
		for range initRuns {
			var e, all time.Duration
			allocs = 0
			for pkg, in := range traceInits(t, localFull, fnEnv) {
				all += in.clock
				if !shippedPkgs[pkg] {
					e += in.clock
					allocs += in.allocs
				}
			}
			extra, total = append(extra, e), append(total, all)
		}
		rep.figure("unmodified_sdk_init_ms_"+fn.id, ms(median(extra)), "ms", 1, capped("none; saved at every cold start"))
		rep.note(title, "| %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f ms | %d | %.1f ms |", fn.id, shippedMiB, fullMiB, fullMiB-shippedMiB,
			ms(median(extra)), allocs, ms(median(total)))
		if fullMiB > 15 {
			over = append(over, fmt.Sprintf("%s %.1f", strings.TrimSuffix(fn.id, "Function"), fullMiB))
		}
	}
	rep.note(title, "**Without the stubs** %d of the %d functions that link the SDK would be above 15 MiB (%s MiB). Of the two parts, the GCP "+
		"providers weigh ~4.6 MiB and most of the init time; protojson weighs little itself but, by keeping every exported method "+
		"reachable, costs 3.7–11 MiB, the most in the functions with the most AWS clients.", len(over), len(sdkFns), strings.Join(over, ", "))
}

// buildFunction builds a function as the Makefile's LAMBDA_BUILD does, with another go.mod.
func buildFunction(t *testing.T, env *environment, modfile, arch, dir, out string) {
	cmd := exec.Command(env.goCmd, "build", "-modfile", modfile, "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w", "-o", out, "./functions/"+dir)
	cmd.Dir = env.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
}

type pkgInit struct {
	clock  time.Duration
	allocs int
}

// initLine is one line of GODEBUG=inittrace=1: "init <pkg> @<t> ms, <clock> ms clock, <bytes> bytes, <allocs> allocs".
var initLine = regexp.MustCompile(`^init (\S+) @[0-9.]+ ms, ([0-9.]+) ms clock, \d+ bytes, (\d+) allocs`)

// traceInits starts a bootstrap outside the emulator, where it initialises its packages and its
// configuration and then stops (no runtime API to ask for events), and returns each package's init.
func traceInits(t *testing.T, bootstrap string, fnEnv map[string]string) map[string]pkgInit {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bootstrap)
	cmd.Env = []string{"GODEBUG=inittrace=1", "PATH=/usr/bin:/bin"}
	for k, v := range fnEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run() // it exits non-zero without a runtime API; only its trace matters
	inits := map[string]pkgInit{}
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		m := initLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		clock, _ := strconv.ParseFloat(m[2], 64)
		allocs, _ := strconv.Atoi(m[3])
		inits[m[1]] = pkgInit{time.Duration(clock * float64(time.Millisecond)), allocs}
	}
	require.NotEmpty(t, inits, "no init trace from %s:\n%s", bootstrap, stderr.String())
	require.True(t, slices.ContainsFunc(mapKeys(inits), func(p string) bool { return strings.HasPrefix(p, "runtime") }), "no runtime init in the trace of %s", bootstrap)
	return inits
}

func mapKeys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
