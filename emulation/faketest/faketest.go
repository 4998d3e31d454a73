// Package faketest starts the Databricks fake for tests of other packages and points the real SDK
// clients (through dbclient) at it.
package faketest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/databricks/databricks-sdk-go/logger"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/dbfake"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
)

// AccountID and Token are what the fake accepts.
const (
	AccountID = "0d7b8a3e-1111-4f5e-9c3a-6f1e2d3c4b5a"
	Token     = "dapi-test-token"
	Region    = "us-west-2"
)

func init() {
	// The SDK warns on every client that the fake has no host metadata; that is expected here.
	logger.DefaultLogger = &logger.SimpleLogger{Level: logger.LevelError}
}

// Start starts a fake with PAT auth; opts may set delays, rate limits and the clock.
func Start(t testing.TB, opts dbfake.Options) *dbfake.Server {
	t.Helper()
	if opts.AccountID == "" {
		opts.AccountID = AccountID
	}
	if opts.Token == "" && opts.ClientID == "" {
		opts.Token = Token
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := dbfake.Start(opts)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// Factory returns a client factory for the fake, with every workspace served by the same host.
func Factory(s *dbfake.Server) *dbclient.Factory {
	return dbclient.NewFactory(dbclient.Settings{
		AccountHost: s.URL(), AccountID: AccountID, WorkspaceHostTemplate: s.URL(),
		Credentials: dbclient.Credentials{Token: Token}, RateLimitPerSecond: 1000,
	})
}

// Workspace adds a RUNNING workspace in Region and returns it.
func Workspace(s *dbfake.Server, id int64, name string) provisioning.Workspace {
	ws := provisioning.Workspace{
		WorkspaceId: id, WorkspaceName: name, DeploymentName: name, AwsRegion: Region,
		WorkspaceStatus: provisioning.WorkspaceStatusRunning,
	}
	s.AddWorkspace(ws)
	return s.Workspace(id)
}
