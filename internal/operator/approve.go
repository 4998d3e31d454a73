package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// ApprovalAPI is what approve and reject need: the history, where the AwaitApproval state's task
// token is, and the two answers.
type ApprovalAPI interface {
	HistoryAPI
	SendTaskSuccess(ctx context.Context, params *sfn.SendTaskSuccessInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error)
	SendTaskFailure(ctx context.Context, params *sfn.SendTaskFailureInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error)
}

var _ ApprovalAPI = (*sfn.Client)(nil)

// approvalError is the error name a reject sends; the state machine reports it as the execution's
// error (taskerr.ApprovalRejected).
const approvalError = "ApprovalRejected"

// maxHistoryPages bounds the search for the approval request (a waiting execution has a short history).
const maxHistoryPages = 50

func (a *App) approve(ctx context.Context, args []string) error {
	return a.answer(ctx, "approve", args)
}

func (a *App) reject(ctx context.Context, args []string) error {
	return a.answer(ctx, "reject", args)
}

func (a *App) answer(ctx context.Context, cmd string, args []string) error {
	fs := newFlagSet(cmd)
	sm := fs.String("state-machine", "", "")
	reason := fs.String("reason", "", "")
	positional, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return usageErrorf("want one EXECUTION (an execution ARN, or an execution name with --state-machine), got %d arguments", len(positional))
	}
	if cmd == "reject" && strings.TrimSpace(*reason) == "" {
		return usageErrorf("--reason is required: it goes into the Rotation Rejected event")
	}
	if len(*reason) > 2000 {
		return usageErrorf("--reason is longer than 2000 characters")
	}
	arn, err := executionARN(positional[0], a.stateMachine(*sm))
	if err != nil {
		return err
	}
	api, err := a.client(ctx)
	if err != nil {
		return err
	}
	token, err := approvalToken(ctx, api, arn)
	if err != nil {
		return err
	}
	switch cmd {
	case "approve":
		out, _ := json.Marshal(map[string]string{"approved_at": a.Now().UTC().Format(time.RFC3339), "reason": *reason})
		_, err = api.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(token), Output: aws.String(string(out))})
	default:
		_, err = api.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String(token), Error: aws.String(approvalError),
			Cause: aws.String("rejected by an approver: " + strings.TrimSpace(*reason))})
	}
	var timedOut *sfntypes.TaskTimedOut
	var invalid *sfntypes.InvalidToken
	if errors.As(err, &timedOut) || errors.As(err, &invalid) {
		return fmt.Errorf("%s is no longer waiting for an approval (answered, timed out or closed): %w", arn, err)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", cmd, arn, err)
	}
	verb := map[string]string{"approve": "approved", "reject": "rejected"}[cmd]
	fmt.Fprintf(a.Stdout, "%s %s\n", verb, arn)
	return nil
}

// approvalToken finds the task token of the execution's latest AwaitApproval request: the
// TaskScheduled event of the lambda:invoke.waitForTaskToken state carries the resolved Parameters.
func approvalToken(ctx context.Context, api HistoryAPI, arn string) (string, error) {
	var next *string
	for range maxHistoryPages {
		out, err := api.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn), ReverseOrder: true, NextToken: next})
		if err != nil {
			return "", fmt.Errorf("read the history of %s: %w", arn, err)
		}
		for _, ev := range out.Events {
			d := ev.TaskScheduledEventDetails
			if ev.Type != sfntypes.HistoryEventTypeTaskScheduled || d == nil || !strings.HasSuffix(aws.ToString(d.Resource), ".waitForTaskToken") {
				continue
			}
			var params struct {
				Payload struct {
					TaskToken string `json:"task_token"`
				} `json:"Payload"`
			}
			if err := json.Unmarshal([]byte(aws.ToString(d.Parameters)), &params); err != nil || params.Payload.TaskToken == "" {
				return "", fmt.Errorf("the approval request of %s carries no task token", arn)
			}
			return params.Payload.TaskToken, nil
		}
		if out.NextToken == nil {
			break
		}
		next = out.NextToken
	}
	return "", fmt.Errorf("%s has not asked for an approval (its rule's mode is not approval, or it has not reached AwaitApproval yet)", arn)
}
