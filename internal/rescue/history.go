package rescue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// HistoryAPI reads an execution's event history.
type HistoryAPI interface {
	GetExecutionHistory(ctx context.Context, params *sfn.GetExecutionHistoryInput, optFns ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error)
}

var _ HistoryAPI = (*sfn.Client)(nil)

// States of statemachine/rotation.asl.json the rescue reads by name.
// TestTheStatesTheRescueReadsByNameAreInTheDefinition holds them to the definition.
const (
	// stateStopCompute may have stopped compute before its result ($.stop) was recorded.
	stateStopCompute = "StopCompute"
	// statePatchWorkspace may have sent the PATCH before its result ($.patch) was recorded.
	statePatchWorkspace = "PatchWorkspace"
	// statePublishRejection publishes Rotation Rejected for the whole request.
	statePublishRejection = "PublishRejection"
	// stateRotateWorkspace starts the workspace's child execution and waits for it.
	stateRotateWorkspace = "RotateWorkspace"
)

// publishStates are the iteration states that publish the workspace's own event. Each has
// ResultPath null and catches into $.publish_error, so an output without publish_error means the
// event was accepted.
var publishStates = []string{"PublishSuccess", "PublishFailure", "PublishRawFailure", "PublishPlan"}

// historyPageSize keeps one page in memory at a time: every state event of an iteration carries
// the workspace's whole run, inventory included (up to 64 KiB inline), so 100 events stay within a
// few MB. A 4-hour rotation of several workspaces has a few thousand events.
const historyPageSize = 100

// iteration is what the history says about one workspace's Map iteration.
type iteration struct {
	workspaceID string
	// run is the latest state input or output that was the workspace's run: tasks only add keys to
	// it, so it is the most complete.
	run string
	// lastState is the last state the iteration entered; entered lists every state it entered.
	lastState string
	entered   map[string]bool
	// outcome is what the state that ended the iteration output; empty while it had not ended.
	// result is that whole output: the element the Map would have put in $.results.
	outcome string
	result  json.RawMessage
	// reported is set once a Publish* state of the iteration exited without a publish_error.
	reported bool
}

// history is what the rescue keeps of an execution's history.
type history struct {
	execution string
	// input is the execution input, from ExecutionStarted.
	input string
	// lockIDs are the workspaces of the lock the execution took ($.lock, owner = the execution).
	lockIDs []string
	// rejectionReported is set when PublishRejection published Rotation Rejected.
	rejectionReported bool
	// keyARN and keyConfigID are the plan's key and the registered key configuration
	// ($.plan.key_arn, $.key_config.key_config_id), for the retirement reminder.
	keyARN, keyConfigID string
	iterationsStarted   int
	events              int
	iterations          map[string]*iteration
	order               []string // workspace ids, in the order their iterations appeared
}

// readHistory reads the whole history of an execution, oldest first, one page at a time.
func readHistory(ctx context.Context, api HistoryAPI, executionARN, name string) (*history, error) {
	h := &history{execution: name, iterations: map[string]*iteration{}}
	pages := sfn.NewGetExecutionHistoryPaginator(api, &sfn.GetExecutionHistoryInput{
		ExecutionArn:         aws.String(executionARN),
		IncludeExecutionData: aws.Bool(true),
		MaxResults:           historyPageSize,
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the history of %s (after %d events): %w", executionARN, h.events, err)
		}
		for i := range page.Events {
			h.event(&page.Events[i])
		}
	}
	return h, nil
}

func (h *history) event(ev *types.HistoryEvent) {
	h.events++
	switch {
	case ev.Type == types.HistoryEventTypeExecutionStarted && ev.ExecutionStartedEventDetails != nil:
		h.input = deref(ev.ExecutionStartedEventDetails.Input)
	case ev.Type == types.HistoryEventTypeMapIterationStarted:
		h.iterationsStarted++
	case strings.HasSuffix(string(ev.Type), "StateEntered") && ev.StateEnteredEventDetails != nil:
		name, input := deref(ev.StateEnteredEventDetails.Name), deref(ev.StateEnteredEventDetails.Input)
		if id := parseDoc(input).runWorkspace(); id != "" {
			it := h.iteration(id)
			// A workspace goes through two Maps when the rotation needed an approval: the read-only
			// plan (ending PLANNED) and then the rotation. A state entered with its run means an
			// iteration under way, whatever an earlier Map's iteration ended with.
			it.outcome, it.result = "", nil
			it.run, it.lastState = input, name
			it.entered[name] = true
		}
	case strings.HasSuffix(string(ev.Type), "StateExited") && ev.StateExitedEventDetails != nil:
		name, output := deref(ev.StateExitedEventDetails.Name), deref(ev.StateExitedEventDetails.Output)
		doc := parseDoc(output)
		if id := doc.runWorkspace(); id != "" {
			it := h.iteration(id)
			it.run = output
			if slices.Contains(publishStates, name) && isNull(doc.PublishError) {
				it.reported = true
			}
			return
		}
		if id := rotation.IDString(doc.WorkspaceID); id != "" && doc.Outcome != "" {
			it := h.iteration(id)
			it.outcome, it.result = doc.Outcome, json.RawMessage(output)
			return
		}
		// A top-level state: the document is the execution's state.
		if doc.Lock != nil && doc.Lock.Owner == h.execution {
			for _, raw := range doc.Lock.WorkspaceIDs {
				if id := rotation.IDString(raw); id != "" && !slices.Contains(h.lockIDs, id) {
					h.lockIDs = append(h.lockIDs, id)
				}
			}
		}
		if doc.Plan != nil && doc.Plan.KeyARN != "" {
			h.keyARN = doc.Plan.KeyARN
		}
		if doc.KeyConfig != nil && doc.KeyConfig.KeyConfigID != "" {
			h.keyConfigID = doc.KeyConfig.KeyConfigID
		}
		if name == statePublishRejection && isNull(doc.PublishError) {
			h.rejectionReported = true
		}
	}
}

// delegated says the workspace's iteration handed it to a child execution that had not ended when
// this execution did.
func (h *history) delegated(workspaceID string) bool {
	it := h.iterations[workspaceID]
	return it != nil && it.entered[stateRotateWorkspace] && it.outcome == ""
}

func (h *history) iteration(workspaceID string) *iteration {
	if it, ok := h.iterations[workspaceID]; ok {
		return it
	}
	it := &iteration{workspaceID: workspaceID, entered: map[string]bool{}}
	h.iterations[workspaceID] = it
	h.order = append(h.order, workspaceID)
	return it
}

// stateDoc is what the rescue reads of a state input or output. The definition shapes these
// documents, but a console input or a newer definition may not: every field is optional.
type stateDoc struct {
	// Workspace is set in a workspace's run (the Map's ItemSelector puts it there).
	Workspace *struct {
		WorkspaceID json.RawMessage `json:"workspace_id"`
	} `json:"workspace"`
	// WorkspaceID and Outcome are what the Pass state that ends an iteration outputs.
	WorkspaceID json.RawMessage `json:"workspace_id"`
	Outcome     string          `json:"outcome"`
	// Lock is the LockWorkspaces result, carried by every later top-level state.
	Lock *struct {
		Owner        string            `json:"owner"`
		WorkspaceIDs []json.RawMessage `json:"workspace_ids"`
	} `json:"lock"`
	PublishError json.RawMessage `json:"publish_error"`
	// Plan and KeyConfig are the Validate and RegisterKeyConfig results of the top level.
	Plan *struct {
		KeyARN string `json:"key_arn"`
	} `json:"plan"`
	KeyConfig *struct {
		KeyConfigID string `json:"key_config_id"`
	} `json:"key_config"`
}

// parseDoc reads a state document. A field of an unexpected type is left out (encoding/json goes
// on past it); a document that is not a JSON object gives the zero stateDoc.
func parseDoc(doc string) stateDoc {
	var d stateDoc
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return stateDoc{}
		}
	}
	return d
}

// runWorkspace is the workspace id of a run, or "" for any other document.
func (d stateDoc) runWorkspace() string {
	if d.Workspace == nil {
		return ""
	}
	return rotation.IDString(d.Workspace.WorkspaceID)
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}
