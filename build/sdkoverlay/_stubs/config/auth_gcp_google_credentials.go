// Stub of github.com/databricks/databricks-sdk-go@v0.182.0/config/auth_gcp_google_credentials.go,
// substituted for it at build time by `go build -overlay` (see build/sdkoverlay and the Makefile).
// The original imports google.golang.org/api/{idtoken,option} and golang.org/x/oauth2/google,
// which link gRPC, protobuf descriptors, cloud.google.com/go/auth, OpenCensus and OpenTelemetry
// into every binary that links any SDK service package (~4.6 MiB, 12-16 ms of package init at each
// cold start). The rotator never authenticates with GCP credentials (internal/dbclient names
// oauth-m2m or pat), so the shipped functions keep the type, its name and its place in the
// default chain, and refuse GCP credentials with a clear error instead of using them.

package config

import (
	"context"
	"fmt"

	"github.com/databricks/databricks-sdk-go/config/credentials"
)

type GoogleCredentials struct {
}

func (c GoogleCredentials) Name() string {
	return "google-credentials"
}

// Configure declines exactly when the original does (nothing configured for GCP), so the default
// chain goes on to the next strategy as before; a configuration that would have used GCP
// credentials gets an error naming why, rather than a silent fallback to another strategy.
func (c GoogleCredentials) Configure(ctx context.Context, cfg *Config) (credentials.CredentialsProvider, error) {
	if err := unsupportedGroupRoleAssumption(cfg, c.Name()); err != nil {
		return nil, err
	}
	if cfg.GoogleCredentials == "" || !cfg.IsGcp() {
		return nil, nil
	}
	return nil, fmt.Errorf("auth type %q is not linked into this build (databricks-cmk-rotator ships without the SDK's GCP credential providers; see build/sdkoverlay)", c.Name())
}
