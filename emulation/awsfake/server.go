// Package awsfake is a local, stateful stand-in for the slice of the AWS JSON-protocol APIs the
// rotator and its sandbox use: Step Functions (StartExecution, DescribeExecution, ListExecutions,
// GetExecutionHistory, StopExecution), EventBridge PutEvents and Secrets Manager GetSecretValue.
//
// One HTTP server on 127.0.0.1 answers all three services and dispatches on the X-Amz-Target
// header, so the real aws-sdk-go-v2 clients (and the Node engine) can be pointed at it with
// BaseEndpoint. Errors are answered as AWS answers them (HTTP 400, X-Amzn-ErrorType, a JSON body
// with __type and message) so callers can test them with errors.As on the SDK's typed errors.
// A target it does not know is answered with UnknownOperationException and recorded, so a test
// sees the gap instead of a silent success.
package awsfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Config says which account and region the fake pretends to be.
type Config struct {
	// Region is used in the ARNs the fake mints (secret ARNs). Default us-east-1.
	Region string
	// AccountID is used in the ARNs the fake mints. Default 123456789012.
	AccountID string
	// Logger receives one line per request (target and status, never a body). Default: discard.
	Logger *slog.Logger
}

// Request is one entry of the request log: which operation was called and how it was answered.
// Bodies are never kept: a GetSecretValue response carries a secret.
type Request struct {
	Target    string
	Status    int
	ErrorCode string
}

// Server is the fake AWS endpoint. Create it with Start and stop it with Close.
type Server struct {
	region    string
	accountID string
	log       *slog.Logger

	listener net.Listener
	http     *http.Server
	url      string

	// baseCtx is the parent of every execution's context: Close cancels it so runners stop.
	baseCtx    context.Context
	cancelBase context.CancelFunc
	runners    sync.WaitGroup

	mu       sync.Mutex
	requests []Request

	sfn     sfnState
	events  eventsState
	secrets secretsState
	dynamo  dynamoState
	s3      s3State
}

// Start listens on a free port of 127.0.0.1 and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "123456789012"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("awsfake: listen on 127.0.0.1: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		region:     cfg.Region,
		accountID:  cfg.AccountID,
		log:        cfg.Logger,
		listener:   ln,
		url:        "http://" + ln.Addr().String(),
		baseCtx:    ctx,
		cancelBase: cancel,
		sfn:        newSFNState(),
		secrets:    newSecretsState(),
		s3:         newS3State(),
	}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("awsfake: serve", "err", err)
		}
	}()
	return s, nil
}

// URL is the endpoint to give an SDK client as BaseEndpoint, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.url }

// Region is the region the fake pretends to be in.
func (s *Server) Region() string { return s.region }

// AccountID is the account the fake pretends to be.
func (s *Server) AccountID() string { return s.accountID }

// Close aborts the executions still running, waits for their runners to return and stops serving.
func (s *Server) Close() {
	s.abortRunning("Sandbox.ServerClosed", "the awsfake server was closed while the execution was running")
	s.cancelBase()
	s.runners.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
}

// Requests returns the request log, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// apiError is an AWS error answer: HTTP status, error code (the SDK's typed error name) and message.
type apiError struct {
	status  int
	code    string
	message string
	// extra carries service-specific error fields, e.g. DynamoDB's CancellationReasons.
	extra map[string]any
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errBadRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

// operation decodes its input from the request body and returns the output to encode as JSON.
type operation func(s *Server, body []byte) (any, *apiError)

// Both protocols share the dispatch; they differ in the content type AWS answers with.
const (
	json10 = "application/x-amz-json-1.0"
	json11 = "application/x-amz-json-1.1"
)

type route struct {
	contentType string
	op          operation
}

var routes = map[string]route{
	"AWSStepFunctions.StartExecution":      {json10, (*Server).startExecution},
	"AWSStepFunctions.DescribeExecution":   {json10, (*Server).describeExecution},
	"AWSStepFunctions.ListExecutions":      {json10, (*Server).listExecutions},
	"AWSStepFunctions.GetExecutionHistory": {json10, (*Server).getExecutionHistory},
	"AWSStepFunctions.StopExecution":       {json10, (*Server).stopExecution},
	"AWSStepFunctions.SendTaskSuccess":     {json10, (*Server).sendTaskSuccess},
	"AWSStepFunctions.SendTaskFailure":     {json10, (*Server).sendTaskFailure},
	"AWSStepFunctions.SendTaskHeartbeat":   {json10, (*Server).sendTaskHeartbeat},
	"AWSStepFunctions.RedriveExecution":    {json10, (*Server).redriveExecution},
	"Sandbox.RegisterTaskToken":            {json10, (*Server).registerTaskToken},
	"Sandbox.TaskTokenResult":              {json10, (*Server).taskTokenResult},
	"AWSEvents.PutEvents":                  {json11, (*Server).putEvents},
	"secretsmanager.GetSecretValue":        {json11, (*Server).getSecretValue},
	"DynamoDB_20120810.PutItem":            {json10, (*Server).putItem},
	"DynamoDB_20120810.GetItem":            {json10, (*Server).getItem},
	"DynamoDB_20120810.DeleteItem":         {json10, (*Server).deleteItem},
	"DynamoDB_20120810.TransactWriteItems": {json10, (*Server).transactWriteItems},
}

// maxRequestBytes is above every quota the real services enforce (1 MB for Step Functions).
const maxRequestBytes = 2 << 20

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if isS3(r) {
		s.serveS3(w, r)
		return
	}
	rt, known := routes[target]
	contentType := rt.contentType
	if contentType == "" {
		contentType = json11
	}
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())

	var (
		out  any
		aerr *apiError
	)
	switch {
	case !known:
		aerr = errBadRequest("UnknownOperationException", "awsfake does not implement target %q (%s %s)", target, r.Method, r.URL.Path)
	case r.Method != http.MethodPost:
		aerr = &apiError{status: http.StatusMethodNotAllowed, code: "UnknownOperationException", message: "only POST is supported"}
	default:
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
		switch {
		case err != nil:
			aerr = errBadRequest("SerializationException", "read request body: %v", err)
		case len(body) > maxRequestBytes:
			aerr = &apiError{status: http.StatusRequestEntityTooLarge, code: "RequestEntityTooLargeException", message: "request body too large"}
		default:
			out, aerr = rt.op(s, body)
		}
	}

	status := http.StatusOK
	code := ""
	w.Header().Set("Content-Type", contentType)
	var payload []byte
	if aerr != nil {
		status, code = aerr.status, aerr.code
		w.Header().Set("X-Amzn-ErrorType", aerr.code)
		body := map[string]any{"__type": aerr.code, "message": aerr.message}
		for k, v := range aerr.extra {
			body[k] = v
		}
		payload, _ = json.Marshal(body)
	} else {
		var err error
		if payload, err = json.Marshal(out); err != nil {
			status, code = http.StatusInternalServerError, "InternalFailure"
			w.Header().Set("X-Amzn-ErrorType", code)
			payload, _ = json.Marshal(map[string]string{"__type": code, "message": "encode response: " + err.Error()})
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(payload)

	s.mu.Lock()
	s.requests = append(s.requests, Request{Target: target, Status: status, ErrorCode: code})
	s.mu.Unlock()
	level := slog.LevelDebug
	if !known {
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "awsfake request", "target", target, "status", status, "error_code", code)
}

// decode unmarshals an operation's input. Unknown fields are accepted, as AWS accepts them.
func decode(body []byte, v any) *apiError {
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errBadRequest("SerializationException", "cannot decode request: %v", err)
	}
	return nil
}

// epochSeconds is a timestamp as the AWS JSON protocols carry it: seconds since the epoch as a
// number with a fractional part (the SDKs parse it with ParseEpochSeconds).
type epochSeconds time.Time

func (t epochSeconds) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	return []byte(fmt.Sprintf("%d.%03d", tt.Unix(), tt.Nanosecond()/int(time.Millisecond))), nil
}

func (t *epochSeconds) UnmarshalJSON(b []byte) error {
	var f json.Number
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("timestamp must be epoch seconds: %w", err)
	}
	v, err := f.Float64()
	if err != nil {
		return fmt.Errorf("timestamp must be epoch seconds: %w", err)
	}
	sec := int64(v)
	*t = epochSeconds(time.Unix(sec, int64((v-float64(sec))*1e9)).Round(time.Millisecond).UTC())
	return nil
}

func ptrEpoch(t time.Time) *epochSeconds {
	if t.IsZero() {
		return nil
	}
	e := epochSeconds(t)
	return &e
}
