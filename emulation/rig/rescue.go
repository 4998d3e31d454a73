package rig

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/awsfake"
)

// StatusChangeEvent is the "Step Functions Execution Status Change" event AWS sends to the default
// bus when an execution closes, with the fields of the documented detail
// (events/stepfunctions/*.json are captured ones). awsfake has no event rules: the rig builds the
// event from the execution and hands it to the rescue, as the RotationEndedBadly rule would.
func StatusChangeEvent(e awsfake.Execution, region, account string) ([]byte, error) {
	nullable := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	var stop *int64
	if !e.StopDate.IsZero() {
		ms := e.StopDate.UnixMilli()
		stop = &ms
	}
	detail := map[string]any{
		"executionArn": e.ExecutionArn, "stateMachineArn": e.StateMachineArn, "name": e.Name,
		"status": string(e.Status), "startDate": e.StartDate.UnixMilli(), "stopDate": stop,
		"input": e.Input, "inputDetails": map[string]bool{"included": true},
		"output": nullable(e.Output), "error": nullable(e.Error), "cause": nullable(e.Cause),
		"redriveCount": 0,
	}
	at := e.StopDate
	if at.IsZero() {
		at = e.StartDate
	}
	// One id per status change, as EventBridge gives one event (redelivered with the same id).
	sum := sha256.Sum256([]byte(e.ExecutionArn + "\n" + string(e.Status)))
	id := fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
	return json.Marshal(map[string]any{
		"version": "0", "id": id, "detail-type": "Step Functions Execution Status Change",
		"source": "aws.states", "account": account, "time": at.UTC().Format("2006-01-02T15:04:05Z"),
		"region": region, "resources": []string{e.ExecutionArn}, "detail": detail,
	})
}

// Rescue hands the status change of a closed execution to the rescue function (Options.Rescue),
// as the RotationEndedBadly rule's asynchronous invoke would, and returns the function's error if
// it failed.
func (r *Rig) Rescue(ctx context.Context, executionARN string) error {
	fn, ok := r.Functions[RescueFunction.LogicalID]
	if !ok {
		return fmt.Errorf("the rig was started without Options.Rescue")
	}
	e, ok := r.AWS.Execution(executionARN)
	if !ok {
		return fmt.Errorf("no execution %s", executionARN)
	}
	if e.Status == awsfake.StatusRunning {
		return fmt.Errorf("execution %s is still running", strings.TrimPrefix(executionARN, "arn:"))
	}
	event, err := StatusChangeEvent(e, r.Region, AWSAccount)
	if err != nil {
		return err
	}
	_, fnErr, err := fn.Invoke(ctx, event)
	if err != nil {
		return err
	}
	if fnErr != nil {
		return fnErr
	}
	return nil
}
