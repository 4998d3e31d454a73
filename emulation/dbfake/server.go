// Package dbfake is a stateful, in-process fake of the Databricks Account and Workspace REST APIs
// that the rotator touches: customer-managed key configurations, workspaces, clusters, instance
// pools, SQL warehouses and pipelines.
//
// It is modelled on databricks/cli libs/testserver: it keeps state between calls, answers with the
// real status codes and error codes (so the SDK's apierr mapping and retry rules apply unchanged),
// injects faults by route pattern, records every request, and answers a route it does not know with
// a loud 404 instead of a guess. Every payload is an SDK type encoded with encoding/json, which goes
// through the SDK's own MarshalJSON, so the wire format cannot drift from what the clients decode.
//
// Time-based transitions (a cluster TERMINATING, a workspace PROVISIONING) are computed lazily from
// timestamps whenever state is read, so nothing runs in the background and a zero delay means the
// very next read sees the final state.
package dbfake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"golang.org/x/time/rate"
)

// Options configures a Server. Only AccountID is required.
type Options struct {
	// AccountID is the only account the fake knows; account routes for any other id are refused.
	AccountID string
	// Token is the accepted personal access token ("Authorization: Bearer <Token>"). Empty disables PAT.
	Token string
	// ClientID and ClientSecret are the accepted OAuth M2M credentials. Empty disables M2M.
	ClientID, ClientSecret string
	// Latency is added to every API call (not to OIDC or discovery calls).
	Latency time.Duration
	// RateLimit is the server-wide request rate in requests per second, as a token bucket with
	// burst max(1, RateLimit). Excess calls get 429 REQUEST_LIMIT_EXCEEDED. 0 means unlimited.
	RateLimit float64
	// TransitionDelay is how long an intermediate state lasts: cluster TERMINATING and PENDING,
	// warehouse STOPPING and STARTING, pipeline STOPPING and STARTING, pool idle instances draining
	// or filling. 0 means the next read sees the final state.
	TransitionDelay time.Duration
	// WorkspaceUpdateDelay is how long an accepted workspace PATCH takes to show.
	WorkspaceUpdateDelay time.Duration
	// Realistic, when set, replaces TransitionDelay and WorkspaceUpdateDelay with Databricks-like
	// latencies drawn at random (and lets users start compute again mid-rotation); see RealisticTime.
	Realistic *RealisticTime
	// PageSize caps the page size of paginated lists (and is the default page size). Default 100.
	PageSize int
	// Addr is the listen address. Default "127.0.0.1:0".
	Addr string
	// Logger receives one DEBUG line per request and an ERROR line per unknown route.
	// Default slog.Default().
	Logger *slog.Logger
	// Now is the clock used for state transitions. Default time.Now. Latency, fault delays and the
	// rate limiter always use real time.
	Now func() time.Time
	// MaxRecordedRequests bounds Requests(); past it the oldest tenth is dropped. Default 100000.
	MaxRecordedRequests int
}

// Request is one call as the fake saw it. Headers are never recorded, so no token reaches it, and
// the body of a token request has its client secret redacted.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	// WorkspaceID is the X-Databricks-Workspace-Id header of a workspace call, or the workspace id
	// in the path of an account workspace call; 0 otherwise.
	WorkspaceID int64
	Status      int
	// ErrorCode is the error_code (or OAuth "error") of an error answer, empty on success.
	ErrorCode string
	Body      string
	// Injected is true when a Fault produced the answer.
	Injected bool
	Time     time.Time
	Duration time.Duration
}

// Server is the fake. Create it with Start and stop it with Close. All methods are safe for
// concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	limiter  *rate.Limiter
	routes   []route
	listener net.Listener
	httpSrv  *http.Server
	url      string
	closed   sync.Once

	mu          sync.Mutex
	rng         *mathrand.Rand // Realistic mode only; guarded by mu
	workspaces  ordered[workspaceRec]
	keys        ordered[provisioning.CustomerManagedKey]
	credentials ordered[provisioning.Credential]
	compute     map[int64]*workspaceCompute
	behaviours  map[int64]PatchBehaviour
	// revertAtStart holds, per workspace, the values a RevertAtFirstStart update reverts to.
	revertAtStart map[int64]provisioning.Workspace
	updateLog     []WorkspaceUpdateSpan
	tokens        map[string]time.Time // issued OAuth access token -> expiry
	faults        []*faultRule
	requests      []Request
	unknown       []string
}

// Start validates opts, listens on opts.Addr and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.AccountID == "" {
		return nil, errors.New("dbfake: Options.AccountID is required")
	}
	if opts.RateLimit < 0 {
		return nil, fmt.Errorf("dbfake: Options.RateLimit must not be negative, got %v", opts.RateLimit)
	}
	if opts.PageSize < 0 {
		return nil, fmt.Errorf("dbfake: Options.PageSize must not be negative, got %d", opts.PageSize)
	}
	if opts.PageSize == 0 {
		opts.PageSize = 100
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxRecordedRequests <= 0 {
		opts.MaxRecordedRequests = 100000
	}
	s := &Server{
		opts:          opts,
		log:           opts.Logger,
		now:           opts.Now,
		compute:       map[int64]*workspaceCompute{},
		behaviours:    map[int64]PatchBehaviour{},
		revertAtStart: map[int64]provisioning.Workspace{},
		tokens:        map[string]time.Time{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "dbfake")
	if s.now == nil {
		s.now = time.Now
	}
	if r := opts.Realistic; r != nil {
		if r.Minute <= 0 {
			return nil, fmt.Errorf("dbfake: Options.Realistic.Minute must be positive, got %v", r.Minute)
		}
		s.rng = mathrand.New(mathrand.NewPCG(r.Seed, r.Seed^0x9e3779b97f4a7c15))
	}
	if opts.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(opts.RateLimit), max(1, int(opts.RateLimit)))
	}
	s.routes = s.routeTable()

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("dbfake: listen on %s: %w", opts.Addr, err)
	}
	s.listener = ln
	s.url = "http://" + ln.Addr().String()
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("dbfake: serve stopped", "error", err)
		}
	}()
	return s, nil
}

// URL is the base URL to use as the SDK's Config.Host, for account and workspace clients alike.
func (s *Server) URL() string { return s.url }

// Close stops the server and drops open connections. It is safe to call more than once.
func (s *Server) Close() {
	s.closed.Do(func() { _ = s.httpSrv.Close() })
}

// Requests returns a copy of the request log, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ClearRequests empties the request log and the unknown-route list.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.unknown = nil
}

// UnknownRoutes lists "METHOD PATH" for every call that matched no route, in arrival order.
// A test that ends with a non-empty list talks to an API the fake does not model.
func (s *Server) UnknownRoutes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unknown...)
}

// scope decides which gates a route passes before its handler runs.
type scope int

const (
	// scopePublic: discovery and OIDC. No bearer token, no latency, no rate limit.
	scopePublic scope = iota
	// scopeAccount: bearer token; the first path parameter is the account id.
	scopeAccount
	// scopeWorkspace: bearer token; the workspace comes from X-Databricks-Workspace-Id.
	scopeWorkspace
)

type route struct {
	method  string
	pattern *regexp.Regexp
	scope   scope
	handle  func(*call) (any, error)
	// redactBody marks routes whose body may carry a client secret.
	redactBody bool
	// workspaceInPath marks account routes whose second parameter is a workspace id.
	workspaceInPath bool
}

// call is one request on its way through a handler. Handlers run with s.mu held.
type call struct {
	r      *http.Request
	body   []byte
	params []string
	wsID   int64
	now    time.Time
}

func (s *Server) match(method, path string) (*route, []string) {
	for i := range s.routes {
		rt := &s.routes[i]
		if rt.method != method {
			continue
		}
		if m := rt.pattern.FindStringSubmatch(path); m != nil {
			return rt, m[1:]
		}
	}
	return nil, nil
}

const maxBodyBytes = 8 << 20

// ServeHTTP makes the Server an http.Handler, so it can also be mounted in-process.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	rec := Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Time: started}
	var res result
	rt, params := s.match(r.Method, r.URL.Path)
	switch {
	case rt == nil:
		res = errorResult(&apiError{status: http.StatusNotFound, code: "ENDPOINT_NOT_FOUND",
			message: fmt.Sprintf("dbfake: no route for %s %s", r.Method, r.URL.Path)})
		rec.Body = string(body)
		if strings.Contains(r.URL.Path, "/oidc/") || strings.Contains(r.URL.Path, "token") {
			rec.Body = redactForm(body)
		}
		s.log.Error("dbfake: unknown route; the fake does not model this API",
			"method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery)
	case err != nil:
		res = errorResult(&apiError{status: http.StatusBadRequest, code: "MALFORMED_REQUEST",
			message: "could not read the request body: " + err.Error()})
	default:
		if rt.redactBody {
			rec.Body = redactForm(body)
		} else {
			rec.Body = string(body)
		}
		res = s.serve(r, rt, params, body, &rec)
	}

	if res.status == 0 {
		res.status = http.StatusOK
	}
	rec.Status, rec.ErrorCode, rec.Duration = res.status, res.errorCode, time.Since(started)
	s.record(rec, rt == nil)

	contentType := res.contentType
	if contentType == "" {
		contentType = "application/json"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(res.status)
	_, _ = w.Write(res.payload())
	s.log.Debug("dbfake: request", "method", rec.Method, "path", rec.Path, "status", rec.Status,
		"error_code", rec.ErrorCode, "workspace_id", rec.WorkspaceID, "duration", rec.Duration)
}

func (s *Server) record(rec Request, unknown bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if unknown {
		s.unknown = append(s.unknown, rec.Method+" "+rec.Path)
	}
	s.requests = append(s.requests, rec)
	if n := len(s.requests); n > s.opts.MaxRecordedRequests {
		// Drop a tenth at a time so a long benchmark does not copy the log on every request.
		keep := max(1, s.opts.MaxRecordedRequests*9/10)
		s.requests = append([]Request(nil), s.requests[n-keep:]...)
	}
}

// serve runs the gates in the order a real front door would: authentication, throttling, the
// service's own latency, injected faults, then the handler.
func (s *Server) serve(r *http.Request, rt *route, params []string, body []byte, rec *Request) result {
	c := &call{r: r, body: body, params: params}
	switch rt.scope {
	case scopeWorkspace:
		rec.WorkspaceID, _ = strconv.ParseInt(r.Header.Get(workspaceIDHeader), 10, 64)
	case scopeAccount:
		if rt.workspaceInPath {
			rec.WorkspaceID, _ = strconv.ParseInt(params[1], 10, 64)
		}
	}

	if rt.scope != scopePublic {
		if err := s.authenticate(r); err != nil {
			return errorResult(err)
		}
		if s.limiter != nil && !s.limiter.Allow() {
			return errorResult(&apiError{status: http.StatusTooManyRequests, code: "REQUEST_LIMIT_EXCEEDED",
				message: fmt.Sprintf("dbfake: rate limit of %v requests per second exceeded", s.opts.RateLimit)})
		}
		if err := sleep(r.Context(), s.opts.Latency); err != nil {
			return errorResult(&apiError{status: 499, code: "CANCELLED", message: "request cancelled"})
		}
	}

	var lost *Fault
	if f, ok := s.takeFault(r.Method, r.URL.Path); ok {
		rec.Injected = f.Status != 0
		if err := sleep(r.Context(), f.Delay); err != nil {
			return errorResult(&apiError{status: 499, code: "CANCELLED", message: "request cancelled"})
		}
		switch {
		case f.Status != 0 && f.LoseResponse:
			lost = &f
		case f.Status != 0:
			s.log.Info("dbfake: injected fault", "method", r.Method, "path", r.URL.Path, "status", f.Status)
			return faultResult(f)
		}
	}
	if lost != nil {
		// The handler runs and its change stays; only the answer is replaced.
		_ = s.handle(r, rt, params, c)
		s.log.Info("dbfake: injected fault after the call took effect", "method", r.Method, "path", r.URL.Path, "status", lost.Status)
		return faultResult(*lost)
	}
	return s.handle(r, rt, params, c)
}

// handle runs the route's handler under the lock, after the gates of serve.
func (s *Server) handle(r *http.Request, rt *route, params []string, c *call) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.now = s.now()
	switch rt.scope {
	case scopeAccount:
		if params[0] != s.opts.AccountID {
			return errorResult(&apiError{status: http.StatusForbidden, code: "PERMISSION_DENIED",
				message: fmt.Sprintf("The caller is not authorized to access account %s", params[0])})
		}
	case scopeWorkspace:
		id, err := s.workspaceFromHeader(r)
		if err != nil {
			return errorResult(err)
		}
		c.wsID = id
		s.settleCompute(id, c.now)
	}
	out, err := rt.handle(c)
	if err != nil {
		return errorResult(err)
	}
	// Encode while the lock is held: the answer may share maps and slices with the state.
	res := okResult(out)
	res.raw, res.contentType = res.payload(), "application/json"
	return res
}

const workspaceIDHeader = "X-Databricks-Workspace-Id"

// workspaceFromHeader resolves the workspace of a workspace-level call. The SDK sends the header
// whenever Config.WorkspaceID is set; GetWorkspaceClient sets it for us.
func (s *Server) workspaceFromHeader(r *http.Request) (int64, error) {
	h := r.Header.Get(workspaceIDHeader)
	if h == "" {
		return 0, &apiError{status: http.StatusBadRequest, code: "INVALID_PARAMETER_VALUE",
			message: "dbfake: workspace APIs need the " + workspaceIDHeader + " header (set Config.WorkspaceID)"}
	}
	id, err := strconv.ParseInt(h, 10, 64)
	if err != nil {
		return 0, &apiError{status: http.StatusBadRequest, code: "INVALID_PARAMETER_VALUE",
			message: fmt.Sprintf("dbfake: %s %q is not a workspace id", workspaceIDHeader, h)}
	}
	if s.workspaces.get(strconv.FormatInt(id, 10)) == nil {
		return 0, &apiError{status: http.StatusNotFound, code: "RESOURCE_DOES_NOT_EXIST",
			message: fmt.Sprintf("Workspace %d does not exist", id)}
	}
	return id, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// apiError is an error answer in the shape every Databricks REST API uses.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: "RESOURCE_DOES_NOT_EXIST", message: fmt.Sprintf(format, args...)}
}

// oauthError is an error answer of the OIDC token endpoint (RFC 6749 §5.2 shape).
type oauthError struct {
	status      int
	code        string
	description string
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

type result struct {
	status      int
	errorCode   string
	body        any
	raw         []byte
	contentType string
}

func (r result) payload() []byte {
	if r.raw != nil {
		return r.raw
	}
	b, err := json.Marshal(r.body)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error_code": "INTERNAL_ERROR", "message": "dbfake: encode: " + err.Error()})
	}
	return b
}

func okResult(body any) result {
	if body == nil {
		body = struct{}{}
	}
	return result{status: http.StatusOK, body: body}
}

func errorResult(err error) result {
	var api *apiError
	var oauth *oauthError
	switch {
	case errors.As(err, &api):
		return result{status: api.status, errorCode: api.code,
			body: map[string]string{"error_code": api.code, "message": api.message}}
	case errors.As(err, &oauth):
		return result{status: oauth.status, errorCode: oauth.code,
			body: map[string]string{"error": oauth.code, "error_description": oauth.description}}
	default:
		return result{status: http.StatusInternalServerError, errorCode: "INTERNAL_ERROR",
			body: map[string]string{"error_code": "INTERNAL_ERROR", "message": "dbfake: " + err.Error()}}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID returns a random RFC 4122 version 4 id, the shape of key configuration and pipeline ids.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ordered is a map that remembers insertion order, so lists and page tokens are stable.
type ordered[T any] struct {
	byID map[string]*T
	ids  []string
}

func (o *ordered[T]) get(id string) *T {
	return o.byID[id]
}

func (o *ordered[T]) put(id string, v *T) {
	if o.byID == nil {
		o.byID = map[string]*T{}
	}
	if _, ok := o.byID[id]; !ok {
		o.ids = append(o.ids, id)
	}
	o.byID[id] = v
}

func (o *ordered[T]) remove(id string) {
	if _, ok := o.byID[id]; !ok {
		return
	}
	delete(o.byID, id)
	for i, x := range o.ids {
		if x == id {
			o.ids = append(o.ids[:i:i], o.ids[i+1:]...)
			break
		}
	}
}

func (o *ordered[T]) all() []*T {
	out := make([]*T, 0, len(o.ids))
	for _, id := range o.ids {
		out = append(out, o.byID[id])
	}
	return out
}

// timeline holds the scheduled steps of one object's state machine. Steps are applied lazily, on
// the first read at or after their time, in the order they were scheduled.
type timeline struct {
	steps []step
}

type step struct {
	at    time.Time
	apply func(at time.Time)
}

func (t *timeline) schedule(at time.Time, apply func(at time.Time)) {
	t.steps = append(t.steps, step{at: at, apply: apply})
}

// reset drops steps not yet applied: a new action supersedes the transition in flight.
func (t *timeline) reset() { t.steps = nil }

func (t *timeline) settle(now time.Time) {
	for len(t.steps) > 0 && !t.steps[0].at.After(now) {
		st := t.steps[0]
		t.steps = t.steps[1:]
		st.apply(st.at)
	}
}

func millis(t time.Time) int64 { return t.UnixMilli() }
