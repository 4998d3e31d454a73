package dbfake

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databricks/databricks-sdk-go/client"
	"github.com/databricks/databricks-sdk-go/config"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/require"
)

const (
	testAccount = "6f1e5a2c-0000-4000-8000-00000000acc1"
	testToken   = "dapi-fake-personal-access-token"
	testRegion  = "us-east-1"
	wsID        = int64(42)

	oldManagedKey = "cmk-managed-old"
	newManagedKey = "cmk-managed-new"
	storageKey    = "cmk-storage"
	otherStorage  = "cmk-storage-other"
)

func keyARN(region, id string) string {
	return "arn:aws:kms:" + region + ":111122223333:key/" + id
}

// fakeClock is a settable clock for Options.Now, so tests of delays never sleep.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startFake starts a server with PAT auth unless opts say otherwise, logging to a discarded sink
// unless opts.Logger is set.
func startFake(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.AccountID == "" {
		opts.AccountID = testAccount
	}
	if opts.Token == "" && opts.ClientID == "" {
		opts.Token = testToken
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := Start(opts)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// noLoaders keeps the developer's DATABRICKS_* variables and ~/.databrickscfg out of the tests.
type noLoaders struct{}

func (noLoaders) Name() string                   { return "none" }
func (noLoaders) Configure(*config.Config) error { return nil }

func newClient(t *testing.T, cfg *config.Config) *client.DatabricksClient {
	t.Helper()
	cfg.Loaders = []config.Loader{noLoaders{}}
	if cfg.RetryTimeoutSeconds == 0 {
		cfg.RetryTimeoutSeconds = 10
	}
	if cfg.RateLimitPerSecond == 0 {
		// The SDK's own limiter (15 rps per client) would otherwise pace the concurrency test.
		cfg.RateLimitPerSecond = 10000
	}
	if cfg.HTTPTimeoutSeconds == 0 {
		cfg.HTTPTimeoutSeconds = 10
	}
	c, err := client.New(cfg)
	require.NoError(t, err)
	return c
}

func accountClient(t *testing.T, s *Server) *client.DatabricksClient {
	t.Helper()
	return newClient(t, &config.Config{Host: s.URL(), AccountID: testAccount, Token: testToken})
}

func workspaceClient(t *testing.T, s *Server, ws int64) *client.DatabricksClient {
	t.Helper()
	return newClient(t, &config.Config{Host: s.URL(), Token: testToken, WorkspaceID: strconv.FormatInt(ws, 10)})
}

// seedRotation seeds workspace 42 in us-east-1 on an old managed-services key and a storage key,
// plus a new managed-services key to rotate to.
func seedRotation(t *testing.T, s *Server) {
	t.Helper()
	add := func(id string, ucs ...provisioning.KeyUseCase) {
		s.AddKeyConfig(provisioning.CustomerManagedKey{
			CustomerManagedKeyId: id,
			AwsKeyInfo:           &provisioning.AwsKeyInfo{KeyArn: keyARN(testRegion, id)},
			UseCases:             ucs,
		})
	}
	add(oldManagedKey, provisioning.KeyUseCaseManagedServices)
	add(newManagedKey, provisioning.KeyUseCaseManagedServices)
	add(storageKey, provisioning.KeyUseCaseStorage)
	add(otherStorage, provisioning.KeyUseCaseStorage)
	s.AddWorkspace(provisioning.Workspace{
		WorkspaceId:                         wsID,
		WorkspaceName:                       "analytics",
		DeploymentName:                      "dbc-analytics",
		AwsRegion:                           testRegion,
		ManagedServicesCustomerManagedKeyId: oldManagedKey,
		StorageCustomerManagedKeyId:         storageKey,
	})
}

// rawCall is for the checks the SDK hides: bodies, headers, statuses.
func rawCall(t *testing.T, s *Server, method, path, token string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func configFor(s *Server, account string) *config.Config {
	return &config.Config{Host: s.URL(), AccountID: account, Token: testToken}
}

func newWorkspacesAPI(t *testing.T, s *Server) *provisioning.WorkspacesAPI {
	t.Helper()
	return provisioning.NewWorkspaces(accountClient(t, s))
}
