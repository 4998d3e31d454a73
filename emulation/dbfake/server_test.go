package dbfake

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/apierr"
	"github.com/databricks/databricks-sdk-go/config"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/databricks/databricks-sdk-go/service/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"an account id is required", Options{}},
		{"a negative rate limit is refused", Options{AccountID: testAccount, RateLimit: -1}},
		{"a negative page size is refused", Options{AccountID: testAccount, PageSize: -5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(tt.opts)
			assert.Error(t, err)
		})
	}
}

func TestFaults(t *testing.T) {
	t.Parallel() // the SDK's retry backoff makes the 503 case take about four seconds
	ctx := context.Background()

	t.Run("two 503s then success are absorbed by the SDK's retries", func(t *testing.T) {
		t.Parallel()
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.InjectFault(Fault{Method: http.MethodGet, Path: `/workspaces/\d+$`, Status: http.StatusServiceUnavailable, Times: 2})

		ws, err := provisioning.NewWorkspaces(newClient(t, &config.Config{
			Host: s.URL(), AccountID: testAccount, Token: testToken, RetryTimeoutSeconds: 8,
		})).GetByWorkspaceId(ctx, wsID)
		require.NoError(t, err)
		assert.Equal(t, wsID, ws.WorkspaceId)

		var statuses []int
		for _, r := range s.Requests() {
			if r.Method == http.MethodGet && r.WorkspaceID == wsID {
				statuses = append(statuses, r.Status)
				if r.Status == http.StatusServiceUnavailable {
					assert.True(t, r.Injected)
					assert.Equal(t, "TEMPORARILY_UNAVAILABLE", r.ErrorCode)
				}
			}
		}
		assert.Equal(t, []int{503, 503, 200}, statuses)
	})

	t.Run("a 500 on PATCH surfaces as ErrInternalError and changes nothing", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.InjectFault(Fault{Method: http.MethodPatch, Path: `/workspaces/`, Status: http.StatusInternalServerError, Message: "boom"})

		_, err := patchManagedKey(ctx, newWorkspacesAPI(t, s), newManagedKey)
		require.Error(t, err)
		assert.ErrorIs(t, err, apierr.ErrInternalError)
		assert.Equal(t, oldManagedKey, s.Workspace(wsID).ManagedServicesCustomerManagedKeyId)

		s.ClearFaults()
		_, err = patchManagedKey(ctx, newWorkspacesAPI(t, s), newManagedKey)
		assert.NoError(t, err)
	})

	t.Run("a fault with a custom error code maps through the SDK", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.InjectFault(Fault{Path: `^/api/2\.1/clusters/list$`, Status: http.StatusBadRequest, ErrorCode: "INVALID_STATE", Times: 1})
		clusters := compute.NewClusters(workspaceClient(t, s, wsID))

		_, err := clusters.ListAll(ctx, compute.ListClustersRequest{})
		assert.ErrorIs(t, err, apierr.ErrInvalidState)
		_, err = clusters.ListAll(ctx, compute.ListClustersRequest{})
		assert.NoError(t, err, "Times: 1 fires once")
	})

	t.Run("a method filter leaves other methods alone", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.InjectFault(Fault{Method: http.MethodPatch, Path: `.*`, Status: http.StatusInternalServerError})
		_, err := newWorkspacesAPI(t, s).GetByWorkspaceId(ctx, wsID)
		assert.NoError(t, err)
	})

	t.Run("a delay-only fault slows the call and lets it through", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.InjectFault(Fault{Path: `/workspaces/`, Delay: 50 * time.Millisecond, Times: 1})
		started := time.Now()
		_, err := newWorkspacesAPI(t, s).GetByWorkspaceId(ctx, wsID)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, time.Since(started), 50*time.Millisecond)
		reqs := s.Requests()
		assert.False(t, reqs[len(reqs)-1].Injected)
	})

	t.Run("a raw body is sent verbatim and the SDK still classifies it by status", func(t *testing.T) {
		s := startFake(t, Options{})
		seedRotation(t, s)
		s.InjectFault(Fault{Path: `/workspaces/`, Status: http.StatusBadGateway, Body: "<html><body><pre>Bad gateway</pre></body></html>"})
		_, err := newWorkspacesAPI(t, s).GetByWorkspaceId(ctx, wsID)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Bad gateway")
	})
}

func TestRateLimit(t *testing.T) {
	s := startFake(t, Options{RateLimit: 1})
	seedRotation(t, s)
	path := "/api/2.0/accounts/" + testAccount + "/workspaces"

	status, _ := rawCall(t, s, http.MethodGet, path, testToken, nil, "")
	require.Equal(t, http.StatusOK, status)
	status, body := rawCall(t, s, http.MethodGet, path, testToken, nil, "")
	assert.Equal(t, http.StatusTooManyRequests, status)
	var e struct {
		ErrorCode string `json:"error_code"`
		Message   string `json:"message"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e))
	assert.Equal(t, "REQUEST_LIMIT_EXCEEDED", e.ErrorCode)
	assert.NotEmpty(t, e.Message)

	reqs := s.Requests()
	assert.Equal(t, "REQUEST_LIMIT_EXCEEDED", reqs[len(reqs)-1].ErrorCode)

	status, _ = rawCall(t, s, http.MethodGet, "/.well-known/databricks-config", "", nil, "")
	assert.Equal(t, http.StatusNotFound, status, "discovery is not rate limited")
}

func TestLatencyIsAddedToAPICalls(t *testing.T) {
	s := startFake(t, Options{Latency: 40 * time.Millisecond})
	seedRotation(t, s)
	started := time.Now()
	_, err := newWorkspacesAPI(t, s).GetByWorkspaceId(context.Background(), wsID)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(started), 40*time.Millisecond)
}

func TestUnknownRoutes(t *testing.T) {
	logs := &syncBuffer{}
	s := startFake(t, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	seedRotation(t, s)
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))

	_, err := clusters.Restart(context.Background(), compute.RestartCluster{ClusterId: "c-1"})
	require.Error(t, err)
	assert.ErrorIs(t, err, apierr.ErrNotFound)
	assert.EqualError(t, err, "dbfake: no route for POST /api/2.1/clusters/restart")

	status, body := rawCall(t, s, http.MethodPut, "/api/2.0/accounts/"+testAccount+"/workspaces/42", testToken, nil, "{}")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Contains(t, body, `"error_code":"ENDPOINT_NOT_FOUND"`)

	assert.Equal(t, []string{
		"POST /api/2.1/clusters/restart",
		"PUT /api/2.0/accounts/" + testAccount + "/workspaces/42",
	}, s.UnknownRoutes())
	assert.Contains(t, logs.String(), "level=ERROR")
	assert.Contains(t, logs.String(), "/api/2.1/clusters/restart")
}

func TestAuthentication(t *testing.T) {
	s := startFake(t, Options{})
	seedRotation(t, s)
	path := "/api/2.0/accounts/" + testAccount + "/workspaces"
	wsHeader := http.Header{workspaceIDHeader: {"42"}}

	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		header     http.Header
		wantStatus int
		wantCode   string
	}{
		{"a call without a token is UNAUTHENTICATED", http.MethodGet, path, "", nil, 401, "UNAUTHENTICATED"},
		{"a call with a wrong token is UNAUTHENTICATED", http.MethodGet, path, "dapi-wrong", nil, 401, "UNAUTHENTICATED"},
		{"a call to another account is PERMISSION_DENIED", http.MethodGet, "/api/2.0/accounts/other/workspaces", testToken, nil, 403, "PERMISSION_DENIED"},
		{"a workspace call without the workspace header is refused", http.MethodGet, "/api/2.1/clusters/list", testToken, nil, 400, "INVALID_PARAMETER_VALUE"},
		{"a workspace call for an unknown workspace is RESOURCE_DOES_NOT_EXIST", http.MethodGet, "/api/2.1/clusters/list", testToken,
			http.Header{workspaceIDHeader: {"7"}}, 404, "RESOURCE_DOES_NOT_EXIST"},
		{"a workspace call with the header succeeds", http.MethodGet, "/api/2.1/clusters/list", testToken, wsHeader, 200, ""},
		{"the host metadata probe needs no token and is a 404", http.MethodGet, "/.well-known/databricks-config", "", nil, 404, "NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := rawCall(t, s, tt.method, tt.path, tt.token, tt.header, "")
			assert.Equal(t, tt.wantStatus, status)
			if tt.wantCode != "" {
				var e struct {
					ErrorCode string `json:"error_code"`
				}
				require.NoError(t, json.Unmarshal([]byte(body), &e))
				assert.Equal(t, tt.wantCode, e.ErrorCode)
			}
		})
	}

	t.Run("the SDK maps a wrong token to ErrUnauthenticated", func(t *testing.T) {
		c := newClient(t, &config.Config{Host: s.URL(), AccountID: testAccount, Token: "dapi-wrong"})
		_, err := provisioning.NewWorkspaces(c).List(context.Background())
		assert.ErrorIs(t, err, apierr.ErrUnauthenticated)
	})
}

func TestOAuthM2M(t *testing.T) {
	const clientID, secret = "sp-rotator", "dose-s3cret/with+symbols="
	ctx := context.Background()
	logs := &syncBuffer{}
	s := startFake(t, Options{
		ClientID: clientID, ClientSecret: secret,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	seedRotation(t, s)
	s.AddCluster(wsID, compute.ClusterDetails{ClusterName: "etl"})

	t.Run("account and workspace clients authenticate with client credentials", func(t *testing.T) {
		acct := newClient(t, &config.Config{Host: s.URL(), AccountID: testAccount, ClientID: clientID, ClientSecret: secret})
		all, err := provisioning.NewWorkspaces(acct).List(ctx)
		require.NoError(t, err)
		assert.Len(t, all, 1)

		ws := newClient(t, &config.Config{Host: s.URL(), WorkspaceID: "42", ClientID: clientID, ClientSecret: secret})
		clusters, err := compute.NewClusters(ws).ListAll(ctx, compute.ListClustersRequest{})
		require.NoError(t, err)
		assert.Len(t, clusters, 1)

		var tokenCalls int
		for _, r := range s.Requests() {
			if r.Path == "/oidc/v1/token" {
				tokenCalls++
				assert.Equal(t, http.StatusOK, r.Status)
			}
		}
		assert.GreaterOrEqual(t, tokenCalls, 1)
	})

	t.Run("a wrong secret is invalid_client", func(t *testing.T) {
		c := newClient(t, &config.Config{Host: s.URL(), AccountID: testAccount, ClientID: clientID, ClientSecret: "wrong", AuthType: "oauth-m2m"})
		_, err := provisioning.NewWorkspaces(c).List(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "invalid_client")
	})

	t.Run("credentials in the form body are accepted too", func(t *testing.T) {
		body := "grant_type=client_credentials&client_id=" + clientID + "&client_secret=" + urlEncode(secret)
		status, resp := rawCall(t, s, http.MethodPost, "/oidc/accounts/"+testAccount+"/v1/token", "",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body)
		require.Equal(t, http.StatusOK, status)
		var tok struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int    `json:"expires_in"`
		}
		require.NoError(t, json.Unmarshal([]byte(resp), &tok))
		assert.Equal(t, "Bearer", tok.TokenType)
		assert.Equal(t, 3600, tok.ExpiresIn)

		status, _ = rawCall(t, s, http.MethodGet, "/api/2.0/accounts/"+testAccount+"/workspaces", tok.AccessToken, nil, "")
		assert.Equal(t, http.StatusOK, status, "an issued token authenticates API calls")
	})

	t.Run("a PAT is refused when only M2M is configured", func(t *testing.T) {
		status, _ := rawCall(t, s, http.MethodGet, "/api/2.0/accounts/"+testAccount+"/workspaces", testToken, nil, "")
		assert.Equal(t, http.StatusUnauthorized, status)
	})

	t.Run("neither the secret nor any token reaches Requests() or the log", func(t *testing.T) {
		recorded, err := json.Marshal(s.Requests())
		require.NoError(t, err)
		s.mu.Lock()
		var issued []string
		for tok := range s.tokens {
			issued = append(issued, tok)
		}
		s.mu.Unlock()
		require.NotEmpty(t, issued)
		for _, sink := range []string{string(recorded), logs.String()} {
			assert.NotContains(t, sink, secret)
			assert.NotContains(t, sink, urlEncode(secret))
			for _, tok := range issued {
				assert.NotContains(t, sink, tok)
			}
		}
		assert.Contains(t, string(recorded), "client_secret=REDACTED")
	})
}

func urlEncode(v string) string {
	r := strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D")
	return r.Replace(v)
}

func TestPATNeverRecorded(t *testing.T) {
	logs := &syncBuffer{}
	s := startFake(t, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	seedRotation(t, s)
	_, err := newWorkspacesAPI(t, s).List(context.Background())
	require.NoError(t, err)
	_, _ = rawCall(t, s, http.MethodGet, "/nowhere", testToken, nil, "")

	recorded, err := json.Marshal(s.Requests())
	require.NoError(t, err)
	assert.NotContains(t, string(recorded), testToken)
	assert.NotContains(t, logs.String(), testToken)
}

func TestSeedFile(t *testing.T) {
	const doc = `{
	  "key_configs": [
	    {"customer_managed_key_id": "cmk-a", "aws_key_info": {"key_arn": "arn:aws:kms:us-east-1:111122223333:key/a"}, "use_cases": ["MANAGED_SERVICES"]}
	  ],
	  "workspaces": [{
	    "workspace": {"workspace_id": 1001, "workspace_name": "prod", "aws_region": "us-east-1",
	                  "managed_services_customer_managed_key_id": "cmk-a"},
	    "clusters": [{"cluster_id": "c-1", "state": "RUNNING", "instance_pool_id": "p-1"}],
	    "pools": [{"instance_pool_id": "p-1", "instance_pool_name": "warm", "node_type_id": "i3.xlarge", "min_idle_instances": 1}],
	    "warehouses": [{"id": "w-1", "name": "bi", "state": "STOPPED"}],
	    "pipelines": [{"pipeline_id": "p-9", "name": "stream", "continuous": true}]
	  }]
	}`
	seed, err := DecodeSeed(strings.NewReader(doc))
	require.NoError(t, err)
	s := startFake(t, Options{})
	require.NoError(t, s.Seed(seed))

	ws := s.Workspace(1001)
	assert.Equal(t, provisioning.WorkspaceStatusRunning, ws.WorkspaceStatus)
	assert.Equal(t, testAccount, ws.AccountId)
	assert.Equal(t, "us-east-1", s.KeyConfigs()[0].AwsKeyInfo.KeyRegion)

	c := workspaceClient(t, s, 1001)
	pools, err := compute.NewInstancePools(c).ListAll(context.Background())
	require.NoError(t, err)
	require.Len(t, pools, 1)
	assert.Equal(t, 1, pools[0].Stats.IdleCount)
	assert.Equal(t, 1, pools[0].Stats.UsedCount)
	wh, err := sql.NewWarehouses(c).GetById(context.Background(), "w-1")
	require.NoError(t, err)
	assert.Equal(t, sql.StateStopped, wh.State)
	assert.Equal(t, "RUNNING", string(s.Pipeline(1001, "p-9").State))

	tests := []struct {
		name string
		doc  string
	}{
		{"an unknown top-level key is refused", `{"workspace": []}`},
		{"a workspace without an id is refused", `{"workspaces": [{"workspace": {}}]}`},
		{"a reference to a key configuration that is not seeded is refused",
			`{"workspaces": [{"workspace": {"workspace_id": 5, "storage_customer_managed_key_id": "nope"}}]}`},
		{"an unknown cluster state is refused",
			`{"workspaces": [{"workspace": {"workspace_id": 5}, "clusters": [{"cluster_id": "c", "state": "SLEEPING"}]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fresh := startFake(t, Options{})
			seed, err := DecodeSeed(strings.NewReader(tt.doc))
			if err == nil {
				err = fresh.Seed(seed)
			}
			assert.Error(t, err)
			assert.Empty(t, fresh.Workspaces(), "a refused seed loads nothing")
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startFake(t, Options{TransitionDelay: time.Millisecond})
	seedRotation(t, s)
	clusters := compute.NewClusters(workspaceClient(t, s, wsID))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id := s.AddCluster(wsID, compute.ClusterDetails{ClusterId: "g" + strconv.Itoa(g) + "-" + strconv.Itoa(i)})
				assert.NoError(t, clusters.DeleteByClusterId(ctx, id))
				_, err := clusters.ListAll(ctx, compute.ListClustersRequest{})
				assert.NoError(t, err)
				_ = s.Requests()
				_ = s.Pools(wsID)
			}
		}()
	}
	wg.Wait()
	assert.Len(t, s.Clusters(wsID), 80)
	assert.Empty(t, s.UnknownRoutes())
}
