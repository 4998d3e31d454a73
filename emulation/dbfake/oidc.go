package dbfake

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// tokenLifetime matches what the Databricks OIDC endpoints grant to M2M clients.
const tokenLifetime = time.Hour

// authenticate checks the bearer token of an API call. It never echoes the presented token.
func (s *Server) authenticate(r *http.Request) error {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return &apiError{status: http.StatusUnauthorized, code: "UNAUTHENTICATED",
			message: "dbfake: missing bearer token in the Authorization header"}
	}
	if s.opts.Token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Token)) == 1 {
		return nil
	}
	s.mu.Lock()
	expiry, issued := s.tokens[token]
	s.mu.Unlock()
	// Token expiry runs on the real clock: the SDK refreshes tokens on the real clock too.
	if issued && time.Now().Before(expiry) {
		return nil
	}
	return &apiError{status: http.StatusUnauthorized, code: "UNAUTHENTICATED",
		message: "dbfake: invalid or expired access token"}
}

// wellKnownConfig answers the SDK's host-metadata probe. A 404 makes the SDK fall back to the
// configuration it was given, which is what we want against a loopback host.
func (s *Server) wellKnownConfig(*call) (any, error) {
	return nil, &apiError{status: http.StatusNotFound, code: "NOT_FOUND",
		message: "dbfake: no host metadata"}
}

// oidcDiscovery is what the SDK fetches before M2M on a non-accounts host (127.0.0.1 is one).
func (s *Server) oidcDiscovery(c *call) (any, error) {
	base := "http://" + c.r.Host + "/oidc"
	return map[string]string{
		"authorization_endpoint": base + "/v1/authorize",
		"token_endpoint":         base + "/v1/token",
	}, nil
}

func (s *Server) accountOIDCDiscovery(c *call) (any, error) {
	base := "http://" + c.r.Host + "/oidc/accounts/" + c.params[0]
	return map[string]string{
		"authorization_endpoint": base + "/v1/authorize",
		"token_endpoint":         base + "/v1/token",
	}, nil
}

func invalidClient() error {
	return &oauthError{status: http.StatusUnauthorized, code: "invalid_client",
		description: "Client authentication failed"}
}

// issueToken is the client_credentials grant. The SDK (golang.org/x/oauth2 with
// AuthStyleInHeader) sends the credentials as HTTP Basic, each form-encoded first (RFC 6749
// §2.3.1); credentials in the form body are accepted too.
func (s *Server) issueToken(c *call) (any, error) {
	if len(c.params) > 0 && c.params[0] != s.opts.AccountID {
		return nil, invalidClient()
	}
	if s.opts.ClientID == "" || s.opts.ClientSecret == "" {
		return nil, invalidClient()
	}
	form, err := url.ParseQuery(string(c.body))
	if err != nil {
		return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_request",
			description: "the body is not application/x-www-form-urlencoded"}
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		return nil, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			description: "only client_credentials is supported"}
	}
	id, secret, ok := c.r.BasicAuth()
	if ok {
		id, secret = formUnescape(id), formUnescape(secret)
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(s.opts.ClientID)) == 1
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) == 1
	if !idOK || !secretOK {
		return nil, invalidClient()
	}
	token := "dbfake-" + randomHex(24)
	s.tokens[token] = time.Now().Add(tokenLifetime)
	out := map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   int(tokenLifetime.Seconds()),
	}
	if scope := form.Get("scope"); scope != "" {
		out["scope"] = scope
	}
	return out, nil
}

func formUnescape(v string) string {
	if u, err := url.QueryUnescape(v); err == nil {
		return u
	}
	return v
}

// redactForm keeps a token request's body readable in Requests() without its secret.
func redactForm(body []byte) string {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "<redacted>"
	}
	for k := range form {
		if k == "client_secret" || strings.Contains(strings.ToLower(k), "token") || k == "assertion" {
			form[k] = []string{"REDACTED"}
		}
	}
	return form.Encode()
}

// RotateClientSecret replaces the service principal's OAuth secret and revokes the old one with
// every access token issued under it, as deleting a rotated-out secret in Databricks does: a client
// that keeps the old secret gets invalid_client from the token endpoint and 401 from the API.
func (s *Server) RotateClientSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.ClientSecret = secret
	clear(s.tokens)
}
