package keypolicy_test

import (
	"errors"
	"testing"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// FuzzCheck feeds arbitrary text as a key policy: Check must never panic and must answer either
// nil or a KeyPolicyRejected with a reason. The seed corpus in testdata/fuzz/FuzzCheck holds real
// policies (the vendor's, the KMS default, and broken variants).
func FuzzCheck(f *testing.F) {
	f.Fuzz(func(t *testing.T, policyJSON string, storage, allowMissing, govCloud bool) {
		req := keypolicy.Requirement{
			DatabricksAccountID:          accountID,
			Partition:                    "aws",
			UseCases:                     []string{rotation.UseCaseManagedServices},
			AllowMissingAccountCondition: allowMissing,
			KeyARN:                       keyARN,
		}
		if storage {
			req.UseCases = append(req.UseCases, rotation.UseCaseStorage)
		}
		if govCloud {
			req.Partition, req.GovCloudShard = "aws-us-gov", keypolicy.ShardCivilian
		}
		err := keypolicy.Check(policyJSON, req)
		if err == nil {
			return
		}
		var rejected *taskerr.KeyPolicyRejected
		if !errors.As(err, &rejected) {
			t.Fatalf("Check returned %T (%v), want nil or *taskerr.KeyPolicyRejected", err, err)
		}
		if rejected.Reason == "" {
			t.Fatal("rejection without a reason")
		}
	})
}
