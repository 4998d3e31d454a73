package keyguard

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// KeyAPI is the KMS surface of the guard: resolve a key and put it back.
type KeyAPI interface {
	DescribeKey(ctx context.Context, params *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	CancelKeyDeletion(ctx context.Context, params *kms.CancelKeyDeletionInput, optFns ...func(*kms.Options)) (*kms.CancelKeyDeletionOutput, error)
	EnableKey(ctx context.Context, params *kms.EnableKeyInput, optFns ...func(*kms.Options)) (*kms.EnableKeyOutput, error)
	PutKeyPolicy(ctx context.Context, params *kms.PutKeyPolicyInput, optFns ...func(*kms.Options)) (*kms.PutKeyPolicyOutput, error)
}

var _ KeyAPI = (*kms.Client)(nil)

// Undo actions, as the event names them.
const (
	UndoCancelKeyDeletion = "CancelKeyDeletion"
	UndoEnableKey         = "EnableKey"
	UndoPutKeyPolicy      = "PutKeyPolicy"
)

// undoResult is what the undo did. err is the failed call, if any, for the caller to classify.
type undoResult struct {
	action   string
	undone   bool
	keyState kmstypes.KeyState
	problem  string
	err      error
	// restoredFrom names the policy a PutKeyPolicy undo put back.
	restoredFrom string
}

// undo puts the key back to Enabled. Each step reads the state first, so a redelivered event (or a
// retry after a failed step) continues where the last attempt stopped instead of failing on a key
// that is already back.
func (h *Handler) undo(ctx context.Context, change Change, keyARN string) undoResult {
	r := undoResult{action: UndoEnableKey}
	if change == ChangeScheduleKeyDeletion {
		r.action = UndoCancelKeyDeletion
	}
	state, err := h.keyState(ctx, keyARN)
	if err != nil {
		return r.failed("DescribeKey", err)
	}
	if state == kmstypes.KeyStatePendingDeletion && change == ChangeScheduleKeyDeletion {
		if _, err := h.KMS.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(keyARN)}); err != nil {
			return r.failed("CancelKeyDeletion", err)
		}
		// AWS leaves a key whose deletion was cancelled Disabled; local-kms leaves it Enabled.
		if state, err = h.keyState(ctx, keyARN); err != nil {
			return r.failed("DescribeKey", err)
		}
	}
	if state == kmstypes.KeyStateDisabled {
		// For a cancelled deletion: the guard re-enables every disabled key a workspace depends on,
		// so this key was Enabled when its deletion was scheduled (see the package documentation).
		if _, err := h.KMS.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(keyARN)}); err != nil {
			r.keyState = state
			return r.failed("EnableKey", err)
		}
		state = kmstypes.KeyStateEnabled
	}
	r.keyState = state
	switch state {
	case kmstypes.KeyStateEnabled:
		r.undone = true
	case kmstypes.KeyStatePendingDeletion:
		r.problem = "the key is pending deletion; the ScheduleKeyDeletion event is guarded on its own"
	default:
		r.problem = fmt.Sprintf("the key is %s, which the guard cannot undo", state)
	}
	return r
}

func (r undoResult) failed(call string, err error) undoResult {
	r.err = fmt.Errorf("%s: %w", call, err)
	r.problem = r.err.Error()
	return r
}

func (h *Handler) keyState(ctx context.Context, keyARN string) (kmstypes.KeyState, error) {
	out, err := h.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyARN)})
	if err != nil {
		return "", err
	}
	if out.KeyMetadata == nil {
		return "", fmt.Errorf("DescribeKey of %s returned no key metadata", keyARN)
	}
	return out.KeyMetadata.KeyState, nil
}
