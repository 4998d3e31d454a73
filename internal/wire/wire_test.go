package wire

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAFunctionWithAMissingSettingExitsAtInitNamingIt runs Configured in a child process, as a
// function's main does at cold start: Lambda must see an init failure that names the setting, not a
// function that serves half-configured.
func TestAFunctionWithAMissingSettingExitsAtInitNamingIt(t *testing.T) {
	if os.Getenv("WIRE_TEST_CHILD") == "1" {
		bus := Configured(Require(func(string) (string, bool) { return "", false }, "EVENT_BUS_NAME"))
		_ = bus
		os.Exit(0) // not reached when Configured works
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAFunctionWithAMissingSettingExitsAtInitNamingIt$")
	cmd.Env = append(os.Environ(), "WIRE_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("child ended with %v, want exit status 1; output:\n%s", err, out)
	}
	for _, want := range []string{"cannot start: configuration", "EVENT_BUS_NAME is required"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("init log does not say %q:\n%s", want, out)
		}
	}
}

func TestRequireReturnsTheSettingThatIsThere(t *testing.T) {
	got, err := Require(func(name string) (string, bool) { return "bus-" + name, true }, "EVENT_BUS_NAME")
	if err != nil || got != "bus-EVENT_BUS_NAME" {
		t.Fatalf("Require = %q, %v; want the value and no error", got, err)
	}
}
