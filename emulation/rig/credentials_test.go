package rig_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
)

const rotatedSecret = "dose-ROTATED-1a2b3c4d5e6f-never-log-me"

// Issue 9, item 2: the OAuth secret is rotated in Secrets Manager and the old one revoked in
// Databricks while compute is down. The warm ComputeStatus function holds a revoked token and the
// old secret; it must re-read the secret once and carry on, not fail the run with compute down.
func TestAnOAuthSecretRotatedMidRotationIsReReadAndTheRotationCompletes(t *testing.T) {
	s := start(t, func(o *rig.Options) {
		o.Instances = 1 // one environment per function, so the next CheckStopped runs warm
		slowTime(o)     // a Databricks minute of 500 ms: clusters take seconds to terminate, so a second check comes
	})
	arn := s.rotateAnalytics()
	s.waitForState(arn, "WaitForStopAgain") // CheckStopped ran once, warm, and compute is going down
	require.NoError(t, s.rig.RotateDatabricksSecret(rotatedSecret))

	exec := s.onlyRotation()
	s.assertRotated(exec)
	s.assertAnalyticsComputeRestored()

	var refused int
	for _, r := range s.rig.Fake.Requests() {
		if r.Status == 401 {
			refused++
		}
	}
	assert.Positive(t, refused, "a warm function met the revoked credentials")
	var reread bool
	for _, line := range s.rig.Logs() {
		if strings.Contains(line, "re-read them from Secrets Manager") {
			reread = true
		}
		assert.NotContains(t, line, rotatedSecret)
	}
	assert.True(t, reread, "the secret was re-read")
	s.assertNoSecretLeaked()
}
