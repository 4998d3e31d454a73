package awsfake

import (
	"encoding/json"
	"strings"
)

// Task tokens: the callback pattern (.waitForTaskToken). The engine's integration registers each
// token it hands to a task with Sandbox.RegisterTaskToken, which also records the TaskScheduled
// history event carrying the resolved Parameters (as AWS does: the token is readable from the
// history), then polls Sandbox.TaskTokenResult until SendTaskSuccess or SendTaskFailure answers it.
// The two Sandbox.* targets are the engine's side of the integration and exist in no AWS service.

type taskToken struct {
	executionArn string
	answered     bool
	failed       bool
	output       string
	errName      string
	cause        string
}

// maxTaskTokenLength is the API's limit on a token.
const maxTaskTokenLength = 2048

func (s *Server) tokenFor(token string) (*taskToken, *apiError) {
	if token == "" || len(token) > maxTaskTokenLength {
		return nil, errBadRequest("InvalidToken", "Invalid Token: '%s'", token)
	}
	t, ok := s.sfn.tokens[token]
	if !ok {
		return nil, errBadRequest("InvalidToken", "Invalid Token: 'Task token not found'")
	}
	// A token that was answered, or whose execution closed, is refused as AWS refuses it.
	if e, ok := s.sfn.execs[t.executionArn]; t.answered || !ok || e.Status != StatusRunning {
		return nil, errBadRequest("TaskTimedOut", "Task Timed Out: 'Provided task does not exist anymore'")
	}
	return t, nil
}

func (s *Server) sendTaskSuccess(body []byte) (any, *apiError) {
	var in struct {
		TaskToken string `json:"taskToken"`
		Output    string `json:"output"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if !json.Valid([]byte(in.Output)) {
		return nil, errBadRequest("InvalidOutput", "Invalid Output: 'output is not valid JSON'")
	}
	return s.answerToken(in.TaskToken, func(t *taskToken) { t.answered, t.output = true, in.Output })
}

func (s *Server) sendTaskFailure(body []byte) (any, *apiError) {
	var in struct {
		TaskToken string `json:"taskToken"`
		Error     string `json:"error"`
		Cause     string `json:"cause"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if len(in.Error) > 256 || len(in.Cause) > 32768 {
		return nil, errBadRequest("ValidationException", "error is at most 256 and cause at most 32768 characters")
	}
	return s.answerToken(in.TaskToken, func(t *taskToken) { t.answered, t.failed, t.errName, t.cause = true, true, in.Error, in.Cause })
}

func (s *Server) sendTaskHeartbeat(body []byte) (any, *apiError) {
	var in struct {
		TaskToken string `json:"taskToken"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	return s.answerToken(in.TaskToken, func(*taskToken) {})
}

// answerToken applies an answer (or a heartbeat) to a live token: SendTaskSuccess, SendTaskFailure
// and SendTaskHeartbeat refuse the same tokens, as AWS does.
func (s *Server) answerToken(token string, answer func(*taskToken)) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, aerr := s.tokenFor(token)
	if aerr != nil {
		return nil, aerr
	}
	answer(t)
	return map[string]any{}, nil
}

func (s *Server) registerTaskToken(body []byte) (any, *apiError) {
	var in struct {
		ExecutionArn string `json:"executionArn"`
		TaskToken    string `json:"taskToken"`
		StateName    string `json:"stateName"`
		Resource     string `json:"resource"`
		Parameters   string `json:"parameters"`
	}
	e, unlock, aerr := s.lockedExecution(body, &in, func() string { return in.ExecutionArn })
	if aerr != nil {
		return nil, aerr
	}
	defer unlock()
	if in.TaskToken == "" {
		return nil, errBadRequest("ValidationException", "taskToken is required")
	}
	s.sfn.tokens[in.TaskToken] = &taskToken{executionArn: in.ExecutionArn}
	e.appendHistory(HistoryEvent{Type: "TaskScheduled", StateName: in.StateName, Resource: in.Resource, Input: in.Parameters})
	return map[string]any{}, nil
}

func (s *Server) taskTokenResult(body []byte) (any, *apiError) {
	var in struct {
		TaskToken string `json:"taskToken"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.sfn.tokens[in.TaskToken]
	if !ok {
		return nil, errBadRequest("InvalidToken", "Invalid Token: 'Task token not found'")
	}
	switch {
	case !t.answered:
		return map[string]any{"status": "PENDING"}, nil
	case t.failed:
		return map[string]any{"status": "FAILED", "error": t.errName, "cause": t.cause}, nil
	}
	return map[string]any{"status": "SUCCEEDED", "output": t.output}, nil
}

// integration is the resource as a TaskScheduled event names it: "invoke.waitForTaskToken" for
// arn:aws:states:::lambda:invoke.waitForTaskToken.
func integration(resource string) string {
	if parts := strings.Split(resource, ":"); len(parts) >= 7 && parts[2] == "states" {
		return parts[6]
	}
	return resource
}
