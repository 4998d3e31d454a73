package sdkoverlay

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sdkModule = "github.com/databricks/databricks-sdk-go"

// pinnedVersion is the SDK version the stubs were written against, and pinnedOriginals the
// SHA-256 of each file they replace in it. A new SDK version fails TestTheStubsMatchTheSDKInGoMod:
// read the new originals, carry their changes into _stubs/ (or drop a stub the SDK no longer
// needs), then update both.
const pinnedVersion = "v0.182.0"

var pinnedOriginals = map[string]string{
	"config/auth_gcp_google_credentials.go": "b012c71562b533bfbd2638f2bb5eaecfa4930617ce9c4c8bbe840c03e1e8e4ee",
	"config/auth_gcp_google_id.go":          "89d69b91427e57d287079b30bf10cb783c97c6ad8f44b96cb2157390e3588a54",
	"common/types/time/time.go":             "9ba7ff0236cea2d4b80d7ed31fff10ceda471b3e490d4d7fb9eefaca0b83ca09",
	"common/types/duration/duration.go":     "5a35bca94de7b88330bfccd11be472c1c53be924ec9bf24b94cf51be9b8fd726",
}

// heavy are the import paths the stubs exist to keep out of the shipped functions.
var heavy = []string{"google.golang.org/grpc", "google.golang.org/api", "google.golang.org/protobuf",
	"cloud.google.com/go/auth", "golang.org/x/oauth2/google", "go.opentelemetry.io/otel"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// sdkCopy runs the Makefile's own rule for .build/sdk, so the tests check what the build uses.
func sdkCopy(t *testing.T, root string) string {
	t.Helper()
	cmd := exec.Command("make", "-s", "--no-print-directory", "sdk-copy")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make sdk-copy:\n%s", out)
	modfile := filepath.Join(root, ".build", "sdk", "go.mod")
	require.FileExists(t, modfile)
	return modfile
}

func stubs(t *testing.T) []string {
	t.Helper()
	var files []string
	require.NoError(t, filepath.WalkDir("_stubs", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, filepath.ToSlash(strings.TrimPrefix(path, "_stubs"+string(filepath.Separator))))
		}
		return err
	}))
	return files
}

func TestTheStubsMatchTheSDKInGoMod(t *testing.T) {
	root := repoRoot(t)
	version := strings.TrimSpace(goCmd(t, root, nil, "list", "-m", "-f", "{{.Version}}", sdkModule))
	require.Equal(t, pinnedVersion, version, "go.mod requires %s %s but build/sdkoverlay/_stubs were written for %s: "+
		"review the stubs against the new originals, then update pinnedVersion and pinnedOriginals", sdkModule, version, pinnedVersion)
	dir := strings.TrimSpace(goCmd(t, root, nil, "list", "-m", "-f", "{{.Dir}}", sdkModule))
	require.NotEmpty(t, dir, "%s is not in the module cache (go mod download)", sdkModule)

	assert.ElementsMatch(t, slices.Collect(maps.Keys(pinnedOriginals)), stubs(t), "every stub replaces one pinned original, and every pinned original has its stub")
	for rel, want := range pinnedOriginals {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		require.NoError(t, err, "the SDK has no %s any more", rel)
		sum := sha256.Sum256(b)
		assert.Equal(t, want, hex.EncodeToString(sum[:]), "%s@%s/%s is not the file its stub was written against", sdkModule, version, rel)
	}
}

// TestTheShippedFunctionsLinkNeitherGoogleAuthNorProtobuf lists what every function links as the
// Makefile builds it, for Lambda (arm64) and for the sandbox (this machine), and checks that the
// same listing against the unmodified SDK does show those packages, so that the check can fail.
func TestTheShippedFunctionsLinkNeitherGoogleAuthNorProtobuf(t *testing.T) {
	root := repoRoot(t)
	modfile := sdkCopy(t, root)

	// The Makefile must build every function, for SAM, `make build` and `make build-local`, with it.
	for _, target := range []string{"build NO_SAM=1", "build-local", "build-KeyGuardFunction ARTIFACTS_DIR=/nonexistent"} {
		cmd := exec.Command("sh", "-c", "make -n --no-print-directory "+target)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "make -n %s:\n%s", target, out)
		assert.Contains(t, string(out), "-modfile="+modfile, "make %s does not build against the SDK copy", target)
	}

	list := func(arch string, extra ...string) map[string][]string {
		args := append([]string{"list", "-tags", "lambda.norpc", "-f", "{{.ImportPath}} {{join .Deps \" \"}}"}, extra...)
		out := goCmd(t, root, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch}, append(args, "./functions/...")...)
		byFn := map[string][]string{}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.GreaterOrEqual(t, len(lines), 10, "go list found too few functions:\n%s", out)
		for _, line := range lines {
			fields := strings.Fields(line)
			fn := strings.TrimPrefix(fields[0], "github.com/cmk-rotator/databricks-cmk-rotator/functions/")
			for _, pkg := range fields[1:] {
				for _, h := range heavy {
					if pkg == h || strings.HasPrefix(pkg, h+"/") {
						byFn[fn] = append(byFn[fn], pkg)
					}
				}
			}
		}
		return byFn
	}
	for _, arch := range slices.Compact([]string{"arm64", runtime.GOARCH}) {
		assert.Empty(t, list(arch, "-modfile="+modfile), "shipped functions (%s) that link what the stubs keep out", arch)
	}
	unmodified := list("arm64")
	assert.Contains(t, unmodified, "key-guard", "against the unmodified SDK key-guard links none of %v: the probe no longer tells anything", heavy)
	assert.Contains(t, unmodified["key-guard"], "google.golang.org/grpc")
	assert.Contains(t, unmodified["key-guard"], "google.golang.org/protobuf/encoding/protojson")

	// The binaries the sandbox runs (make build-local), when this run has them.
	if dir := os.Getenv("ROTATOR_BUILD_DIR"); dir != "" {
		bootstraps, _ := filepath.Glob(filepath.Join(dir, "*", "bootstrap"))
		require.NotEmpty(t, bootstraps, "ROTATOR_BUILD_DIR=%s holds no bootstrap", dir)
		for _, b := range bootstraps {
			out := goCmd(t, root, nil, "version", "-m", b)
			for _, h := range heavy {
				assert.NotContains(t, out, "\tdep\t"+h+"\t", "%s links %s", b, h)
			}
			if strings.Contains(out, sdkModule) {
				assert.Contains(t, out, "=>\t./.build/sdk/databricks-sdk-go", "%s was not built against the SDK copy", b)
			}
		}
	}
}

// TestTheStubsPassTheSDKsOwnTestsAndAgreeWithProtojson runs, against the copy with the stubs in
// place, the SDK's own tests of the replaced common/types packages and testdata/'s comparison of
// each stub with protojson and the protobuf well-known types it replaces (both linked into the
// test binary only), and testdata/'s test of the GCP credential stubs, put beside them with -overlay.
func TestTheStubsPassTheSDKsOwnTestsAndAgreeWithProtojson(t *testing.T) {
	root := repoRoot(t)
	modfile := sdkCopy(t, root)
	copyDir := filepath.Join(filepath.Dir(modfile), "databricks-sdk-go")
	here, err := os.Getwd()
	require.NoError(t, err)
	overlay := map[string]map[string]string{"Replace": {
		filepath.Join(copyDir, "common", "types", "time", "stub_agrees_with_protojson_test.go"):     filepath.Join(here, "testdata", "time_agrees_with_protojson_test.go"),
		filepath.Join(copyDir, "common", "types", "duration", "stub_agrees_with_protojson_test.go"): filepath.Join(here, "testdata", "duration_agrees_with_protojson_test.go"),
	}}
	// The SDK's own tests of config import modules this repository does not require (go-cmp):
	// leave them out of this run and test the GCP stubs with testdata's test alone.
	configTests, err := filepath.Glob(filepath.Join(copyDir, "config", "*_test.go"))
	require.NoError(t, err)
	require.NotEmpty(t, configTests)
	for _, f := range configTests {
		overlay["Replace"][f] = ""
	}
	overlay["Replace"][filepath.Join(copyDir, "config", "stub_gcp_test.go")] = filepath.Join(here, "testdata", "config_gcp_stubs_test.go")
	b, err := json.Marshal(overlay)
	require.NoError(t, err)
	overlayFile := filepath.Join(t.TempDir(), "overlay.json")
	require.NoError(t, os.WriteFile(overlayFile, b, 0o644))

	out := goCmd(t, root, nil, "test", "-count=1", "-v", "-modfile="+modfile, "-overlay="+overlayFile,
		sdkModule+"/common/types/time", sdkModule+"/common/types/duration", sdkModule+"/config")
	for _, name := range []string{"TestTimeStubAgreesWithProtojson", "TestDurationStubAgreesWithProtojson", "TestGCPStubsDeclineWhatTheOriginalsDeclinedAndRefuseTheRest"} {
		assert.Contains(t, out, "--- PASS: "+name, "%s did not run:\n%s", name, out)
	}
	assert.GreaterOrEqual(t, strings.Count(out, "--- PASS: "), 6, "the SDK's own tests did not run:\n%s", out)
}
