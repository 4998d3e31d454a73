package eventpub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
)

type recordingBus struct {
	sent   []*eventbridge.PutEventsInput
	answer *eventbridge.PutEventsOutput
}

func (b *recordingBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	b.sent = append(b.sent, in)
	return b.answer, nil
}

func TestPublishSendsOneEntryFromTheRotatorWithItsResources(t *testing.T) {
	bus := &recordingBus{answer: &eventbridge.PutEventsOutput{}}
	err := Publish(context.Background(), bus, "rotator-events", "Rotation Failed", map[string]string{"workspace_id": "42"}, "arn:aws:kms:us-east-1:111122223333:key/k")
	if err != nil {
		t.Fatal(err)
	}
	if len(bus.sent) != 1 || len(bus.sent[0].Entries) != 1 {
		t.Fatalf("want one call with one entry, got %+v", bus.sent)
	}
	e := bus.sent[0].Entries[0]
	var detail map[string]string
	if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &detail); err != nil || detail["workspace_id"] != "42" {
		t.Fatalf("detail %q (%v)", aws.ToString(e.Detail), err)
	}
	if aws.ToString(e.DetailType) != "Rotation Failed" || aws.ToString(e.EventBusName) != "rotator-events" || len(e.Resources) != 1 {
		t.Fatalf("entry %+v", e)
	}
}

// EventBridge answers 200 and refuses the entry: that is a failure to publish, not a delivery.
func TestAnEntryEventBridgeRefusedIsAnError(t *testing.T) {
	bus := &recordingBus{answer: &eventbridge.PutEventsOutput{FailedEntryCount: 1,
		Entries: []ebtypes.PutEventsResultEntry{{ErrorCode: aws.String("InternalFailure"), ErrorMessage: aws.String("try again")}}}}
	err := Publish(context.Background(), bus, "b", "Rotation Failed", struct{}{})
	var refused *EntryError
	if !errors.As(err, &refused) || refused.Code != "InternalFailure" {
		t.Fatalf("want an EntryError naming InternalFailure, got %v", err)
	}
	bus.answer = &eventbridge.PutEventsOutput{FailedEntryCount: 1}
	if err := Publish(context.Background(), bus, "b", "Rotation Failed", struct{}{}); !errors.As(err, &refused) {
		t.Fatalf("a failed count without entries is still a failure, got %v", err)
	}
}

func TestOnlyThrottledOrInternalRefusalsAreTransient(t *testing.T) {
	for code, want := range map[string]bool{"ThrottlingException": true, "InternalFailure": true, "AccessDeniedException": false} {
		transient, refused := Transient(fmt.Errorf("publish: %w", &EntryError{Code: code}))
		if !refused || transient != want {
			t.Errorf("%s: transient=%v refused=%v, want %v true", code, transient, refused, want)
		}
	}
	if _, refused := Transient(errors.New("dial tcp: refused")); refused {
		t.Error("an error that is no refused entry is not one")
	}
}
