package rig_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/policysnap"
)

// The real Validate keeps the key policy it accepted (key-policies/ in the stack's bucket), which
// is what the key guard puts back when a PutKeyPolicy later takes Databricks' grant away.
func TestTheKeyPolicyValidateAcceptedIsKeptInTheBucket(t *testing.T) {
	s := start(t, nil)
	s.rotateAnalytics()
	exec := s.onlyRotation()
	require.Equal(t, awsfake.StatusSucceeded, exec.Status, "%s: %s", exec.Error, exec.Cause)

	var keys []string
	for k := range s.rig.AWS.Objects(rig.InventoryBucket) {
		if strings.HasPrefix(k, policysnap.Prefix) {
			keys = append(keys, k)
		}
	}
	require.Len(t, keys, 1, "one snapshot for the one key")
	doc, ok := s.rig.AWS.Object(rig.InventoryBucket, keys[0])
	require.True(t, ok)
	var snap policysnap.Snapshot
	require.NoError(t, json.Unmarshal(doc, &snap))
	assert.Equal(t, s.rig.KeyARN(rig.AliasTargetKeyID), snap.KeyARN)
	pol, err := s.rig.KMS.GetKeyPolicy(s.ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(snap.KeyARN), PolicyName: aws.String("default")})
	require.NoError(t, err)
	assert.JSONEq(t, aws.ToString(pol.Policy), snap.Policy, "the policy local-kms holds, as Validate read it")
	assert.WithinDuration(t, exec.StartDate, snap.ValidatedAt, time.Minute)
}
