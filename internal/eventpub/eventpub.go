// Package eventpub publishes one rotator event per PutEvents call. One entry per call because an
// event may carry up to 64 KiB of inventory and a PutEvents request is limited to 256 KiB in all;
// and because PutEvents answers 200 while refusing an entry, which every publisher must treat as a
// failure (EntryError), not as delivered.
package eventpub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// API is the part of the EventBridge API a publisher uses.
type API interface {
	PutEvents(ctx context.Context, params *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ API = (*eventbridge.Client)(nil)

// EntryError is a PutEvents entry that EventBridge refused although the call succeeded.
type EntryError struct{ Code, Message string }

func (e *EntryError) Error() string {
	return fmt.Sprintf("PutEvents entry failed: %s: %s", e.Code, e.Message)
}

// Publish sends detail (encoded as JSON) as one event of detailType from rotation.EventSource to
// bus, naming resources (a key or execution ARN) for rules that match on them.
func Publish(ctx context.Context, api API, bus, detailType string, detail any, resources ...string) error {
	body, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("encode %s detail: %w", detailType, err)
	}
	out, err := api.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		Source:       aws.String(rotation.EventSource),
		DetailType:   aws.String(detailType),
		Detail:       aws.String(string(body)),
		EventBusName: aws.String(bus),
		Resources:    resources,
	}}})
	if err != nil {
		return err
	}
	if out != nil && out.FailedEntryCount > 0 {
		refused := &EntryError{Code: "unknown", Message: "EventBridge counted a failed entry without naming it"}
		if len(out.Entries) > 0 {
			refused = &EntryError{Code: aws.ToString(out.Entries[0].ErrorCode), Message: aws.ToString(out.Entries[0].ErrorMessage)}
		}
		return refused
	}
	return nil
}

// Transient reports whether err is an entry EventBridge refused for a reason a retry may cure
// (throttling, an internal failure); ok is false when err is no refused entry.
func Transient(err error) (transient, ok bool) {
	var entry *EntryError
	if !errors.As(err, &entry) {
		return false, false
	}
	return entry.Code == "ThrottlingException" || entry.Code == "InternalFailure" || entry.Code == "InternalException", true
}
