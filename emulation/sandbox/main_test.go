package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// echoBootstrap is the test Lambda (testdata/echo), built once for the package's tests.
var echoBootstrap string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sandbox-echo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		echoBootstrap = filepath.Join(dir, "bootstrap")
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", echoBootstrap, "./testdata/echo")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build testdata/echo: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// requireTools finds the sandbox tools, or skips the test (fails it when SANDBOX_REQUIRED=1).
func requireTools(t *testing.T) Tools {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tools, err := FindTools(root)
	if err != nil {
		if os.Getenv("SANDBOX_REQUIRED") == "1" {
			t.Fatalf("SANDBOX_REQUIRED=1: %v", err)
		}
		t.Skipf("%v; set SANDBOX_REQUIRED=1 to make this a failure", err)
	}
	return tools
}
