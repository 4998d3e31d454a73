// Command echo is a tiny Lambda used by the sandbox tests: it echoes its input and can be told to
// fail with a typed error, to fail the first N calls, to sleep past its timeout or to crash.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

// BadThing is the typed error the tests match in Retry/Catch ErrorEquals: aws-lambda-go reports
// the Go type name as the errorType.
type BadThing struct{ Reason string }

func (e *BadThing) Error() string { return e.Reason }

type request struct {
	Mode    string `json:"mode"`
	Key     string `json:"key"`
	Fail    int    `json:"fail"`
	SleepMS int    `json:"sleep_ms"`
	EnvName string `json:"env_name"`
}

type response struct {
	Function string          `json:"function"`
	Attempt  int             `json:"attempt"`
	Env      *string         `json:"env,omitempty"`
	Input    json.RawMessage `json:"input"`
}

type handler struct {
	mu       sync.Mutex
	attempts map[string]int
	log      *slog.Logger
}

func (h *handler) handle(ctx context.Context, raw json.RawMessage) (*response, error) {
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, &BadThing{Reason: "input is not an object: " + err.Error()}
	}
	h.mu.Lock()
	h.attempts[req.Key]++
	attempt := h.attempts[req.Key]
	h.mu.Unlock()
	h.log.InfoContext(ctx, "invoked", "mode", req.Mode, "key", req.Key, "attempt", attempt)

	resp := &response{Function: os.Getenv("AWS_LAMBDA_FUNCTION_NAME"), Attempt: attempt, Input: raw}
	switch req.Mode {
	case "bad":
		return nil, &BadThing{Reason: "bad thing for " + req.Key}
	case "flaky":
		if attempt <= req.Fail {
			return nil, &BadThing{Reason: "flaky failure"}
		}
	case "sleep":
		// Ignores ctx like a stuck handler would: the runtime, not the handler, enforces the timeout.
		time.Sleep(time.Duration(req.SleepMS) * time.Millisecond)
	case "crash":
		os.Exit(3)
	case "env":
		if v, ok := os.LookupEnv(req.EnvName); ok {
			resp.Env = &v
		}
	}
	return resp, nil
}

func main() {
	h := &handler{attempts: map[string]int{}, log: slog.New(slog.NewJSONHandler(os.Stdout, nil))}
	lambda.Start(h.handle)
}
