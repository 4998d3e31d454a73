// Package kmscheck decides whether a KMS key can serve a rotation: it exists in its region, it is an
// Enabled customer managed symmetric ENCRYPT_DECRYPT key, and its key policy lets the Databricks
// control plane use it (package keypolicy). Every refusal is a typed task error from taskerr whose
// Reason tells the operator what to change.
package kmscheck

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/keypolicy"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// API is the part of the KMS client the check uses.
type API interface {
	DescribeKey(ctx context.Context, params *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	GetKeyPolicy(ctx context.Context, params *kms.GetKeyPolicyInput, optFns ...func(*kms.Options)) (*kms.GetKeyPolicyOutput, error)
}

var _ API = (*kms.Client)(nil)

// Checker checks keys. ClientFor returns a KMS client for a region: KMS answers only for keys of its
// own region, so a key is always described through a client of the region in its ARN.
type Checker struct {
	ClientFor func(region string) API
}

// Key is what the check learned about the key.
type Key struct {
	ARN         string `json:"arn"`
	KeyID       string `json:"key_id"`
	Region      string `json:"region"`
	Account     string `json:"account"`
	Partition   string `json:"partition"`
	AliasName   string `json:"alias_name,omitempty"`
	State       string `json:"state"`
	Spec        string `json:"spec"`
	Usage       string `json:"usage"`
	MultiRegion bool   `json:"multi_region"`
	// Policy is the key policy the check accepted; never put in a state (the key guard's undo reads
	// it from the snapshot Validate stores: internal/policysnap).
	Policy string `json:"-"`
}

// The only policy name KMS has; local-kms requires it to be sent.
const defaultPolicyName = "default"

// Check describes keyARN (a key or alias ARN) in its own region, refuses keys that cannot serve
// Databricks, and checks the key policy against req (req.Partition defaults to the key's partition
// and req.KeyARN is set to the resolved key ARN). It returns what it learned about the key even
// when it refuses it, so the caller can log it.
//
// Errors: *taskerr.InvalidInput (bad ARN), *taskerr.KeyNotUsable (missing, not Enabled, wrong spec or
// usage, AWS managed, or the rotator may not read it), *taskerr.KeyPolicyRejected, and
// *taskerr.AWSUnavailable for throttling, 5xx and network failures.
func (c Checker) Check(ctx context.Context, keyARN string, req keypolicy.Requirement) (Key, error) {
	parsed, err := ParseKeyARN(keyARN)
	if err != nil {
		return Key{}, err
	}
	key := Key{Region: parsed.Region, Account: parsed.Account, Partition: parsed.Partition, KeyID: parsed.KeyID, AliasName: parsed.AliasName}
	if !parsed.IsAlias {
		key.ARN = keyARN
	}
	if req.Partition == "" {
		req.Partition = parsed.Partition
	} else if req.Partition != parsed.Partition {
		return key, taskerr.Errorf[taskerr.InvalidInput]("key_arn %s is in partition %s, but the rotation is for partition %s", keyARN, parsed.Partition, req.Partition)
	}
	if c.ClientFor == nil {
		return key, taskerr.Errorf[taskerr.InvalidInput]("kmscheck: Checker has no ClientFor")
	}
	client := c.ClientFor(parsed.Region)

	out, err := client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyARN)})
	if err != nil {
		return key, classify(err, "kms:DescribeKey", keyARN, parsed.Region)
	}
	md := out.KeyMetadata
	if md == nil {
		return key, taskerr.Errorf[taskerr.AWSUnavailable]("KMS DescribeKey returned no key metadata for %s in %s", keyARN, parsed.Region)
	}
	key.ARN = aws.ToString(md.Arn)
	key.KeyID = aws.ToString(md.KeyId)
	key.State = string(md.KeyState)
	key.Spec = string(md.KeySpec)
	key.Usage = string(md.KeyUsage)
	key.MultiRegion = aws.ToBool(md.MultiRegion)
	if key.ARN == "" {
		key.ARN = KeyARN{Partition: parsed.Partition, Region: parsed.Region, Account: parsed.Account, KeyID: key.KeyID}.String()
	}
	name := keyName(key)

	if md.KeyState != types.KeyStateEnabled {
		return key, taskerr.Errorf[taskerr.KeyNotUsable]("key %s is %s, not Enabled%s", name, md.KeyState, stateAdvice(md))
	}
	if md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt {
		return key, taskerr.Errorf[taskerr.KeyNotUsable]("key %s has key spec %s and key usage %s; Databricks needs a symmetric key (SYMMETRIC_DEFAULT) with usage ENCRYPT_DECRYPT",
			name, orNone(string(md.KeySpec)), orNone(string(md.KeyUsage)))
	}
	if md.KeyManager == types.KeyManagerTypeAws {
		return key, taskerr.Errorf[taskerr.KeyNotUsable]("key %s is an AWS managed key, whose policy cannot grant Databricks access; use a customer managed key", name)
	}

	pol, err := client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(key.ARN), PolicyName: aws.String(defaultPolicyName)})
	if err != nil {
		return key, classify(err, "kms:GetKeyPolicy", key.ARN, parsed.Region)
	}
	req.KeyARN = key.ARN
	key.Policy = aws.ToString(pol.Policy)
	if err := keypolicy.Check(key.Policy, req); err != nil {
		var rejected *taskerr.KeyPolicyRejected
		if errors.As(err, &rejected) {
			return key, taskerr.Errorf[taskerr.KeyPolicyRejected]("key %s: %s", name, rejected.Reason)
		}
		return key, err
	}
	return key, nil
}

func keyName(k Key) string {
	if k.AliasName != "" {
		return fmt.Sprintf("%s (%s)", k.ARN, k.AliasName)
	}
	return k.ARN
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func stateAdvice(md *types.KeyMetadata) string {
	switch md.KeyState {
	case types.KeyStatePendingDeletion, types.KeyStatePendingReplicaDeletion:
		when := ""
		if md.DeletionDate != nil {
			when = " on " + md.DeletionDate.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf(" (it is scheduled for deletion%s; cancel the deletion and enable it to use it)", when)
	case types.KeyStateDisabled:
		return " (enable it with kms:EnableKey)"
	case types.KeyStatePendingImport:
		return " (its key material has not been imported yet)"
	case types.KeyStateUnavailable:
		return " (its custom key store is disconnected)"
	case types.KeyStateCreating, types.KeyStateUpdating:
		return " (try again once KMS has finished)"
	}
	return ""
}

// classify maps a KMS call failure to a typed task error. Throttling, 5xx and network failures are
// AWSUnavailable so that the state machine retries them; everything else needs an operator.
func classify(err error, permission, keyARN, region string) error {
	if taskerr.TransientAWS(err) {
		return taskerr.Errorf[taskerr.AWSUnavailable]("KMS %s on %s in %s failed transiently: %v", permission, keyARN, region, err)
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		// Not an answer from KMS (a truncated response, a cancelled context): retry it, the state
		// machine's retries are bounded.
		return taskerr.Errorf[taskerr.AWSUnavailable]("KMS %s on %s in %s failed: %v", permission, keyARN, region, err)
	}
	code, msg := apiErr.ErrorCode(), apiErr.ErrorMessage()
	switch code {
	case "NotFoundException":
		return taskerr.Errorf[taskerr.KeyNotUsable]("key %s does not exist in %s (%s: %s)", keyARN, region, code, msg)
	case "AccessDeniedException", "AccessDenied":
		return taskerr.Errorf[taskerr.KeyNotUsable]("the rotator is not allowed %s on key %s: allow it in the rotator's IAM role and in the key policy (%s: %s)", permission, keyARN, code, msg)
	case "InvalidArnException":
		return taskerr.Errorf[taskerr.InvalidInput]("key_arn %s was refused by KMS in %s (%s: %s)", keyARN, region, code, msg)
	case "KMSInvalidStateException", "DisabledException":
		return taskerr.Errorf[taskerr.KeyNotUsable]("key %s cannot be used in its current state (%s: %s)", keyARN, code, msg)
	}
	return taskerr.Errorf[taskerr.KeyNotUsable]("KMS %s on %s in %s failed (%s: %s)", permission, keyARN, region, code, msg)
}
