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

// gcpAuthFiles are the only files of the SDK's config package that import Google's libraries
// (google.golang.org/api/{option,idtoken,impersonate}, golang.org/x/oauth2/google, and through
// them gRPC, protobuf descriptors, cloud.google.com/go/auth, OpenCensus and OpenTelemetry).
var gcpAuthFiles = []string{"config/auth_gcp_google_credentials.go", "config/auth_gcp_google_id.go"}

// benchSDKWeight measures what stands between the functions that link the Databricks SDK and
// binary_mb ≤ 15: each is built a second time against a copy of the SDK whose config package has
// no GCP credential providers (the two files above, and their two entries in the default chain;
// nothing the rotator runs, whose clients name their credentials and load nothing else), and
// both builds' package initialisation is traced (GODEBUG=inittrace=1) to see what the
// difference costs at every cold start. The copy is used for this measurement only.
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
	modfile := sdkWithoutGCPAuth(t, env)
	work := t.TempDir()
	fnEnv := functionEnv(t)

	rep.note(title, "**What the SDK's GCP credential providers cost** (`binary_mb_without_gcp_auth_<LogicalId>`, `gcp_auth_init_ms_<LogicalId>`): "+
		"every function that links the Databricks SDK built a second time, with the same flags, against a copy of the SDK (v0.182.0, from the "+
		"module cache) without `%s` and their two entries in `DefaultCredentials`' chain: the only files that import Google's libraries. The rotator "+
		"never runs them (its clients name their credentials, `oauth-m2m` or `pat`, and load nothing else), so this is what linking them costs, measured; "+
		"the copy is not what `make build` ships. `gcp_auth_init_ms` is the median over %d starts of the bootstrap (this machine's build, GODEBUG=inittrace=1, "+
		"the sandbox's environment) of the init time of the packages that the build without them does not link; `allocs` the same packages' allocations "+
		"(deterministic, unlike the times on a shared machine).", strings.Join(gcpAuthFiles, "` and `"), initRuns)
	rep.note(title, "| function | arm64 binary | without GCP auth | saved | init of the packages GCP auth adds (median) | their allocations | all package inits (median) |\n|---|---:|---:|---:|---:|---:|---:|")
	var under, over []string
	var allocsMin, allocsMax int
	for _, fn := range sdkFns {
		full, err := os.Stat(filepath.Join(env.armDir, fn.id, "bootstrap"))
		require.NoError(t, err, "run `make build` (NO_SAM=1) for the arm64 binaries")
		armLean := filepath.Join(work, fn.id, "arm64", "bootstrap")
		buildFunction(t, env, modfile, "arm64", fn.dir, armLean)
		lean, err := os.Stat(armLean)
		require.NoError(t, err)
		fullMiB, leanMiB := float64(full.Size())/mib, float64(lean.Size())/mib
		rep.figure("binary_mb_without_gcp_auth_"+fn.id, leanMiB, "MB", 1, capped("none; what binary_mb would be"))

		localLean := filepath.Join(work, fn.id, runtime.GOARCH, "bootstrap")
		buildFunction(t, env, modfile, runtime.GOARCH, fn.dir, localLean)
		leanPkgs := map[string]bool{}
		for pkg := range traceInits(t, localLean, fnEnv) {
			leanPkgs[pkg] = true
		}
		var extra, total []time.Duration
		allocs := 0
		for range initRuns {
			var e, all time.Duration
			allocs = 0
			for pkg, in := range traceInits(t, filepath.Join(env.localDir, fn.id, "bootstrap"), fnEnv) {
				all += in.clock
				if !leanPkgs[pkg] {
					e += in.clock
					allocs += in.allocs
				}
			}
			extra, total = append(extra, e), append(total, all)
		}
		rep.figure("gcp_auth_init_ms_"+fn.id, ms(median(extra)), "ms", 1, capped("none; paid at every cold start"))
		rep.note(title, "| %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f ms | %d | %.1f ms |", fn.id, fullMiB, leanMiB, fullMiB-leanMiB,
			ms(median(extra)), allocs, ms(median(total)))
		entry := fmt.Sprintf("%s %.1f", strings.TrimSuffix(fn.id, "Function"), leanMiB)
		if leanMiB <= 15 {
			under = append(under, entry)
		} else {
			over = append(over, entry)
		}
		if allocsMin == 0 || allocs < allocsMin {
			allocsMin = allocs
		}
		allocsMax = max(allocsMax, allocs)
	}
	rep.note(title, "**What stands in the way.** Leaving out the GCP providers alone would bring %d of the %d functions that link the SDK to 15 MiB "+
		"or less (%s) and leave %d above it (%s MiB): those need the SDK's client itself gone, not just its GCP part. Every cold start of "+
		"each of them runs the GCP closure's package initialisers, %d–%d allocations; the times above were taken on a loaded machine and "+
		"overstate them, the cold starts of the table before (quiet machine) put the whole gap between functions with and without the SDK at "+
		"a few milliseconds locally. The figure the size costs in AWS, fetching the larger package on a cold start, is not measured here.",
		len(under), len(sdkFns), strings.Join(under, ", "), len(over), strings.Join(over, ", "), allocsMin, allocsMax)
}

// sdkWithoutGCPAuth copies the SDK from the module cache, leaves out its GCP credential providers,
// and returns a go.mod that builds the repository against the copy.
func sdkWithoutGCPAuth(t *testing.T, env *environment) string {
	cmd := exec.Command(env.goCmd, "list", "-m", "-f", "{{.Dir}}", databricksSDK)
	cmd.Dir = env.root
	out, err := cmd.Output()
	require.NoError(t, err)
	src := strings.TrimSpace(string(out))
	dst := filepath.Join(t.TempDir(), "databricks-sdk-go")
	require.NoError(t, os.CopyFS(dst, os.DirFS(src)))
	for _, f := range gcpAuthFiles {
		require.NoError(t, os.Remove(filepath.Join(dst, f)))
	}
	chainFile := filepath.Join(dst, "config", "auth_default.go")
	require.NoError(t, os.Chmod(chainFile, 0o644))
	chain, err := os.ReadFile(chainFile)
	require.NoError(t, err)
	trimmed := regexp.MustCompile(`(?m)^\s*(GoogleCredentials|GoogleDefaultCredentials)\{\},\n`).ReplaceAll(chain, nil)
	require.Equal(t, 2, bytes.Count(chain, []byte("Google"))-bytes.Count(trimmed, []byte("Google")), "the SDK's default chain changed: update this benchmark")
	require.NoError(t, os.WriteFile(chainFile, trimmed, 0o644))

	dir := t.TempDir()
	mod, err := os.ReadFile(filepath.Join(env.root, "go.mod"))
	require.NoError(t, err)
	mod = append(mod, []byte("\nreplace "+databricksSDK+" => "+dst+"\n")...)
	modfile := filepath.Join(dir, "go.mod")
	require.NoError(t, os.WriteFile(modfile, mod, 0o644))
	sum, err := os.ReadFile(filepath.Join(env.root, "go.sum"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))
	return modfile
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
