package dbfake

import (
	"fmt"
	"net/http"
	"regexp"
	"time"
)

// Fault makes matching calls fail or slow down. Faults are checked in the order they were
// injected, after authentication, rate limiting and Latency, and the first match wins.
type Fault struct {
	// Method matches the HTTP method; "" matches any.
	Method string
	// Path is a regular expression matched against the URL path (not the query).
	Path string
	// Status is the HTTP status to answer with; 0 means Delay only, then the call proceeds.
	Status int
	// ErrorCode and Message fill the error body. ErrorCode defaults to the code the real service
	// uses for Status (500 INTERNAL_ERROR, 503 TEMPORARILY_UNAVAILABLE, 429 REQUEST_LIMIT_EXCEEDED...).
	ErrorCode, Message string
	// Body, when set, is sent verbatim instead of the JSON error (an HTML 502 page, say).
	Body string
	// Times is how many matching calls the fault applies to; 0 means every matching call.
	Times int
	// Delay is slept before answering, without holding any lock.
	Delay time.Duration
	// LoseResponse lets the call reach the handler and change state, then answers with Status
	// instead of the handler's answer: the request was accepted but its response was lost (a 500
	// or 504 from a proxy, a timeout), which is what makes a retry meet its own update in flight.
	LoseResponse bool
}

type faultRule struct {
	Fault
	re        *regexp.Regexp
	remaining int
}

// InjectFault adds a fault. It panics if f.Path is not a valid regular expression, as
// regexp.MustCompile does: that is a mistake in the test, not a condition to handle.
func (s *Server) InjectFault(f Fault) {
	re := regexp.MustCompile(f.Path)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultRule{Fault: f, re: re, remaining: f.Times})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) takeFault(method, path string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Method != "" && f.Method != method {
			continue
		}
		if !f.re.MatchString(path) {
			continue
		}
		if f.Times > 0 {
			f.remaining--
			if f.remaining <= 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return f.Fault, true
	}
	return Fault{}, false
}

func faultResult(f Fault) result {
	code := f.ErrorCode
	if code == "" {
		code = defaultErrorCode(f.Status)
	}
	if f.Body != "" {
		return result{status: f.Status, errorCode: code, raw: []byte(f.Body), contentType: "text/html"}
	}
	msg := f.Message
	if msg == "" {
		msg = fmt.Sprintf("dbfake: injected fault (%d %s)", f.Status, http.StatusText(f.Status))
	}
	return errorResult(&apiError{status: f.Status, code: code, message: msg})
}

// defaultErrorCode is the error_code the real services pair with a status.
func defaultErrorCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BAD_REQUEST"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "RESOURCE_CONFLICT"
	case http.StatusTooManyRequests:
		return "REQUEST_LIMIT_EXCEEDED"
	case http.StatusNotImplemented:
		return "NOT_IMPLEMENTED"
	case http.StatusServiceUnavailable:
		return "TEMPORARILY_UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	default:
		return "INTERNAL_ERROR"
	}
}
