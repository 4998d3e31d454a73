package dbclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/databricks/databricks-sdk-go/config"
	"github.com/databricks/databricks-sdk-go/config/credentials"
	"github.com/databricks/databricks-sdk-go/httpclient"
)

// secretSource holds the OAuth credentials read from Secrets Manager and re-reads them when
// Databricks refuses them. The secret is read once per cold start, but an operator may rotate it
// (and revoke the old one) while a warm function lives on, possibly halfway through a rotation with
// compute down; one re-read turns that 401 into a success instead of a failed compensation.
type secretSource struct {
	secretARN string
	reader    SecretReader

	mu    sync.Mutex
	creds Credentials
	// gen counts the reads that changed the credentials, so that concurrent failures under the same
	// credentials re-read the secret once, not once each.
	gen int
}

func (s *secretSource) current() (Credentials, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creds, s.gen
}

// renew re-reads the secret unless someone already did since gen, and reports whether the
// credentials are now different from those of gen (only then is a retry worth it).
func (s *secretSource) renew(ctx context.Context, gen int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return true, nil
	}
	if s.reader == nil || s.secretARN == "" {
		return false, nil
	}
	raw, err := s.reader.SecretString(ctx, s.secretARN)
	if err != nil {
		return false, fmt.Errorf("re-reading Databricks credentials from secret %s: %w", s.secretARN, err)
	}
	creds, err := parseSecret(s.secretARN, raw)
	if err != nil {
		return false, err
	}
	if creds == s.creds {
		return false, nil
	}
	s.creds = creds
	s.gen++
	// The client id is not a secret; the secret itself never reaches a log.
	slog.InfoContext(ctx, "Databricks refused the OAuth credentials; re-read them from Secrets Manager and retrying once",
		"secret_arn", s.secretARN, "client_id", creds.ClientID)
	return true, nil
}

// renewingAuth is the OAuth M2M credentials strategy of one SDK client, and the HTTP transport of
// that client, so that it sees both ways a stale secret shows: the token endpoint answers
// invalid_client (when a token is fetched), or the API answers 401 (when the token in hand was
// revoked with the secret). Either way it re-reads the secret once and retries once.
type renewingAuth struct {
	src  *secretSource
	base http.RoundTripper

	mu    sync.Mutex
	ctx   context.Context
	cfg   *config.Config
	inner credentials.CredentialsProvider
	// gen is the secretSource generation inner was built on; atomic because RoundTrip reads it while
	// Configure may hold mu through the SDK's OIDC discovery, which goes through RoundTrip.
	gen atomic.Int64
}

var (
	_ config.CredentialsStrategy      = (*renewingAuth)(nil)
	_ credentials.CredentialsProvider = (*renewingAuth)(nil)
	_ http.RoundTripper               = (*renewingAuth)(nil)
)

// Name keeps the SDK's name: it shows in the user agent and in the SDK's errors.
func (a *renewingAuth) Name() string { return "oauth-m2m" }

// Configure is called once by the SDK when the client resolves its configuration.
func (a *renewingAuth) Configure(ctx context.Context, cfg *config.Config) (credentials.CredentialsProvider, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The SDK hands Configure a context that lives as long as the client (Config.refreshCtx); the
	// token source built on it is rebuilt on the same one.
	a.ctx, a.cfg = ctx, cfg
	if err := a.rebuildLocked(); err != nil {
		return nil, err
	}
	return a, nil
}

// rebuildLocked builds the SDK's own M2M provider on the current credentials.
func (a *renewingAuth) rebuildLocked() error {
	creds, gen := a.src.current()
	a.cfg.ClientID, a.cfg.ClientSecret = creds.ClientID, creds.ClientSecret
	inner, err := config.M2mCredentials{}.Configure(a.ctx, a.cfg)
	if err != nil {
		return err
	}
	if inner == nil {
		return errors.New("oauth-m2m: the client id or secret is empty")
	}
	a.inner = inner
	a.gen.Store(int64(gen))
	return nil
}

// provider returns the provider for the newest credentials, rebuilding it when another client of
// the same factory has re-read the secret meanwhile.
func (a *renewingAuth) provider() (credentials.CredentialsProvider, int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, gen := a.src.current(); int64(gen) != a.gen.Load() {
		if err := a.rebuildLocked(); err != nil {
			return nil, 0, err
		}
	}
	return a.inner, int(a.gen.Load()), nil
}

// SetHeaders gets a token; a refused client secret gets one re-read of the secret and one retry.
func (a *renewingAuth) SetHeaders(r *http.Request) error {
	inner, gen, err := a.provider()
	if err != nil {
		return err
	}
	err = inner.SetHeaders(r)
	if err == nil || !refusedCredentials(err) {
		return err
	}
	changed, rerr := a.src.renew(r.Context(), gen)
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	if !changed {
		return err
	}
	inner, _, perr := a.provider()
	if perr != nil {
		return perr
	}
	return inner.SetHeaders(r)
}

// RoundTrip replays once, with a token from re-read credentials, an API call answered 401.
func (a *renewingAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	gen := int(a.gen.Load())
	resp, err := a.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || isTokenRequest(req) || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
		return resp, err
	}
	changed, rerr := a.src.renew(req.Context(), gen)
	if rerr != nil || !changed {
		if rerr != nil {
			slog.WarnContext(req.Context(), "Databricks answered 401 and the secret could not be re-read", "error", rerr)
		}
		return resp, nil
	}
	// Keep the 401 answer intact in case the retry cannot even be built.
	body, rbErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rbErr != nil {
		return resp, nil
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		b, gerr := req.GetBody()
		if gerr != nil {
			return resp, nil
		}
		retry.Body = b
	}
	retry.Header.Del("Authorization")
	if err := a.SetHeaders(retry); err != nil {
		return resp, nil
	}
	return a.base.RoundTrip(retry)
}

// isTokenRequest: the SDK fetches tokens through the same transport; a refused token request is
// handled in SetHeaders, where the credentials are chosen.
func isTokenRequest(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/oidc/")
}

// refusedCredentials reports whether a token request failed because the client credentials were
// refused (401 or invalid_client), as opposed to an outage that a new secret would not fix.
func refusedCredentials(err error) bool {
	var he *httpclient.HttpError
	if errors.As(err, &he) && he.Response != nil && he.Response.StatusCode == http.StatusUnauthorized {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "invalid_client") || strings.Contains(msg, "401 Unauthorized")
}
