package emulation

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoProductPackageImportsTheEmulation lists every package that is deployed to AWS or run by an
// operator (functions/..., internal/..., cmd/...) with its whole import graph, and fails if any of
// them reaches a package under emulation/: a fake linked into a Lambda would be code that runs in
// production without ever being meant to. Tests may use the emulation; go list -deps without
// -test does not follow test imports.
func TestNoProductPackageImportsTheEmulation(t *testing.T) {
	module := goList(t, "-m")
	emulation := module + "/emulation"
	// .Deps is a package's whole import graph, test imports excluded.
	listing := goList(t, "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"/functions/...", module+"/internal/...", module+"/cmd/...")
	lines := strings.Split(listing, "\n")
	if len(lines) < 20 {
		t.Fatalf("go list found %d product packages, fewer than the functions alone:\n%s", len(lines), listing)
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg, deps := fields[0], fields[1:]
		if strings.HasPrefix(pkg, emulation) {
			t.Errorf("%s is listed as product but lives under emulation/", pkg)
		}
		for _, dep := range deps {
			if dep == emulation || strings.HasPrefix(dep, emulation+"/") {
				t.Errorf("product package %s imports %s (directly or through its imports)", pkg, dep)
			}
		}
	}
}

func goList(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}
