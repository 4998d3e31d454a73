package rescue_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rescue"
)

// fixtureStatus is what the rescue makes of every file in events/stepfunctions.
var fixtureStatus = map[string]struct {
	status, err string
	acts        bool
}{
	"rotation-execution-aborted.json":              {rescue.StatusAborted, "", true},
	"rotation-execution-timed-out.json":            {rescue.StatusTimedOut, "", true},
	"rotation-execution-failed-runtime-error.json": {rescue.StatusFailed, "States.Runtime", true},
	"rotation-execution-failed-data-limit.json":    {rescue.StatusFailed, "States.DataLimitExceeded", true},
	"rotation-execution-succeeded.json":            {rescue.StatusSucceeded, "", false},
}

func TestEveryStatusChangeFixtureHasACase(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		assert.Contains(t, fixtureStatus, filepath.Base(f), "events/stepfunctions/%s has no case here", filepath.Base(f))
	}
	for name := range fixtureStatus {
		_, err := os.Stat(filepath.Join(fixtureDir, name))
		assert.NoError(t, err, "fixtureStatus names %s", name)
	}
}

func TestParseEventReadsEveryFixture(t *testing.T) {
	for name, want := range fixtureStatus {
		t.Run(name, func(t *testing.T) {
			sc, err := rescue.ParseEvent(fixture(t, name), rotationARN)
			if !want.acts {
				var sk *rescue.Skip
				require.ErrorAs(t, err, &sk)
				assert.False(t, sk.Malformed, "a well-formed event the rescue has no business with")
				assert.Equal(t, want.status, sc.Status)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, want.status, sc.Status)
			assert.Equal(t, want.err, sc.Error)
			assert.Equal(t, executionARN, sc.ExecutionARN)
			assert.Equal(t, executionName, sc.Name)
			assert.Equal(t, rotationARN, sc.StateMachineARN)
			assert.Equal(t, fixtureInput(t), sc.Input)
			assert.Equal(t, time.Date(2026, 11, 26, 9, 58, 43, 512e6, time.UTC), sc.StartDate, "epoch milliseconds")
			assert.True(t, sc.StopDate.After(sc.StartDate))
			assert.Zero(t, sc.RedriveCount)
		})
	}
}

func TestParseEventTakesTheNameFromTheExecutionARNWhenTheDetailHasNone(t *testing.T) {
	ev := editDetail(t, fixture(t, "rotation-execution-aborted.json"), func(d map[string]any) { delete(d, "name") })
	sc, err := rescue.ParseEvent(ev, rotationARN)
	require.NoError(t, err)
	assert.Equal(t, executionName, sc.Name)
}
