// Package statemachine holds the ASL definitions; these tests hold them against the Go code: the
// error names Retry and Catch match are the type names the task Lambdas return, and every function
// the ASL invokes is built from functions/.
package statemachine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

type state struct {
	Type          string            `json:"Type"`
	Resource      string            `json:"Resource"`
	Retry         []matcher         `json:"Retry"`
	Catch         []matcher         `json:"Catch"`
	ItemProcessor *definition       `json:"ItemProcessor"`
	Next          string            `json:"Next"`
	Default       string            `json:"Default"`
	Choices       []json.RawMessage `json:"Choices"`
}

type matcher struct {
	ErrorEquals []string `json:"ErrorEquals"`
	Next        string   `json:"Next"`
}

type definition struct {
	StartAt string           `json:"StartAt"`
	States  map[string]state `json:"States"`
}

func load(t *testing.T, name string) definition {
	t.Helper()
	raw, err := os.ReadFile(name)
	require.NoError(t, err)
	var d definition
	require.NoError(t, json.Unmarshal(raw, &d))
	return d
}

// walk visits every state, descending into Map item processors.
func walk(d definition, visit func(name string, s state)) {
	for name, s := range d.States {
		visit(name, s)
		if s.ItemProcessor != nil {
			walk(*s.ItemProcessor, visit)
		}
	}
}

// walkRotation visits every state of a rotation: the request's execution (rotation.asl.json) and
// the one execution per workspace it starts (workspace-rotation.asl.json).
func walkRotation(t *testing.T, visit func(name string, s state)) {
	t.Helper()
	for _, file := range []string{"rotation.asl.json", "workspace-rotation.asl.json"} {
		walk(load(t, file), visit)
	}
}

var lambdaResource = regexp.MustCompile(`^\$\{([A-Za-z]+)FunctionArn\}$`)

// Names Step Functions and AWS integrations produce themselves, not our Go code.
func isPlatformError(name string) bool {
	for _, prefix := range []string{"States.", "Lambda.", "Sandbox.", "Runtime.", "EventBridge.", "StepFunctions."} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

func TestEveryMatchedErrorNameIsATaskErrorType(t *testing.T) {
	known := taskerr.Names(taskerr.All)
	walkRotation(t, func(name string, s state) {
		for _, m := range append(slices.Clone(s.Retry), s.Catch...) {
			for _, e := range m.ErrorEquals {
				if !isPlatformError(e) {
					assert.Contains(t, known, e, "state %s matches %q, which no Go task error is named", name, e)
				}
			}
		}
	})
}

// callsNoService are the functions that call no AWS or Databricks API (BuildReport only shapes its
// input), so they never raise a transient service error and need no retrier for one.
var callsNoService = map[string]bool{"${BuildReportFunctionArn}": true}

func TestEveryLambdaTaskRetriesTransientErrorsAndLambdaServiceErrors(t *testing.T) {
	walkRotation(t, func(name string, s state) {
		if s.Type != "Task" || !lambdaResource.MatchString(s.Resource) {
			return
		}
		var retried []string
		for _, r := range s.Retry {
			retried = append(retried, r.ErrorEquals...)
		}
		wanted := []string{"Lambda.ServiceException", "Lambda.TooManyRequestsException", "Sandbox.Timedout"}
		if !callsNoService[s.Resource] {
			wanted = append(wanted, taskerr.Names(taskerr.Transient)...)
		}
		for _, want := range wanted {
			assert.Contains(t, retried, want, "state %s does not retry %s", name, want)
		}
	})
}

func TestNoValidationErrorIsRetried(t *testing.T) {
	validation := taskerr.Names(taskerr.Validation)
	walkRotation(t, func(name string, s state) {
		for _, r := range s.Retry {
			for _, e := range r.ErrorEquals {
				assert.NotContains(t, validation, e, "state %s retries %s, which cannot succeed on a retry", name, e)
			}
		}
	})
}

func TestEveryLambdaTaskCatchesEverything(t *testing.T) {
	walkRotation(t, func(name string, s state) {
		if s.Type != "Task" {
			return
		}
		var caught []string
		for _, c := range s.Catch {
			caught = append(caught, c.ErrorEquals...)
		}
		assert.Contains(t, caught, "States.ALL", "state %s can fail the execution without a report", name)
	})
}

func TestEveryInvokedFunctionIsBuiltFromFunctionsDir(t *testing.T) {
	dirs, err := filepath.Glob("../functions/*/main.go")
	require.NoError(t, err)
	built := map[string]bool{}
	for _, d := range dirs {
		built[filepath.Base(filepath.Dir(d))] = true
	}
	makefile, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	walkRotation(t, func(name string, s state) {
		m := lambdaResource.FindStringSubmatch(s.Resource)
		if m == nil {
			return
		}
		logicalID := m[1] + "Function"
		entry := regexp.MustCompile(logicalID + `:([a-z-]+)`).FindSubmatch(makefile)
		if assert.NotNil(t, entry, "state %s invokes %s, which the Makefile's FUNCTIONS does not list", name, logicalID) {
			assert.True(t, built[string(entry[1])], "%s is mapped to functions/%s, which has no main.go", logicalID, entry[1])
		}
	})
}

func TestEveryTransitionTargetsAStateInTheSameScope(t *testing.T) {
	var check func(d definition)
	check = func(d definition) {
		require.Contains(t, d.States, d.StartAt)
		for name, s := range d.States {
			targets := []string{s.Next, s.Default}
			for _, c := range s.Catch {
				targets = append(targets, c.Next)
			}
			for _, raw := range s.Choices {
				var c struct{ Next string }
				require.NoError(t, json.Unmarshal(raw, &c))
				targets = append(targets, c.Next)
			}
			for _, target := range targets {
				if target != "" {
					assert.Contains(t, d.States, target, "state %s goes to %s, which is not in its scope", name, target)
				}
			}
			if s.ItemProcessor != nil {
				check(*s.ItemProcessor)
			}
		}
	}
	check(load(t, "rotation.asl.json"))
	check(load(t, "retirement-reminder.asl.json"))
	check(load(t, "workspace-rotation.asl.json"))
}
