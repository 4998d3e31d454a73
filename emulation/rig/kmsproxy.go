package rig

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// KMSProxy is a reverse proxy in front of a KMS endpoint (local-kms in the sandbox) that can answer
// requests the way KMS answers when it throttles, so that a scenario can show what a throttled KMS
// does to a rotation without touching the functions: they only see AWS_ENDPOINT_URL_KMS.
type KMSProxy struct {
	srv *http.Server
	url string

	mu sync.Mutex
	// throttle is how many of the next requests get a ThrottlingException; negative means all.
	throttle  int
	throttled []string // X-Amz-Target of each throttled request
	forwarded []string // X-Amz-Target of each forwarded request
}

// kmsThrottleBody is what KMS sends with HTTP 400 when a request exceeds its request quota
// ("Rate exceeded"): the awsJson1_1 error document, with the type in the body and in the header.
const kmsThrottleBody = `{"__type":"ThrottlingException","message":"Rate exceeded"}`

// StartKMSProxy serves a proxy to target (a KMS endpoint URL) on a free loopback port.
func StartKMSProxy(target string) (*KMSProxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("rig: KMS endpoint %q is not a URL", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rig: KMS proxy: %w", err)
	}
	p := &KMSProxy{url: "http://" + ln.Addr().String()}
	forward := httputil.NewSingleHostReverseProxy(u)
	p.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if p.take(op) {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
			w.Header().Set("X-Amzn-RequestId", fmt.Sprintf("kmsproxy-%d", time.Now().UnixNano()))
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(kmsThrottleBody))
			return
		}
		forward.ServeHTTP(w, r)
	})}
	// Serve returns only when Close is called: a failure of the listener shows up as KMS calls
	// failing in the scenario, which is loud enough.
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *KMSProxy) take(op string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.throttle == 0 {
		p.forwarded = append(p.forwarded, op)
		return false
	}
	if p.throttle > 0 {
		p.throttle--
	}
	p.throttled = append(p.throttled, op)
	return true
}

// URL is the proxy's endpoint, to use as AWS_ENDPOINT_URL_KMS.
func (p *KMSProxy) URL() string { return p.url }

// Throttle answers the next n requests with ThrottlingException; a negative n throttles every
// request until Throttle(0).
func (p *KMSProxy) Throttle(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.throttle = n
}

// Throttled lists the operation (X-Amz-Target, e.g. TrentService.DescribeKey) of every throttled request.
func (p *KMSProxy) Throttled() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.throttled...)
}

// Forwarded lists the operation of every request that reached KMS.
func (p *KMSProxy) Forwarded() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.forwarded...)
}

// Close stops the proxy.
func (p *KMSProxy) Close() { _ = p.srv.Close() }
