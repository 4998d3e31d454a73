// Stub of github.com/databricks/databricks-sdk-go@v0.182.0/config/auth_gcp_google_id.go,
// substituted for it at build time by `go build -overlay` (see build/sdkoverlay and the Makefile).
// The original imports google.golang.org/api/{impersonate,option}; see the stub of
// auth_gcp_google_credentials.go for why the shipped functions leave them out.

package config

import (
	"context"
	"fmt"

	"github.com/databricks/databricks-sdk-go/config/credentials"
)

// GoogleDefaultCredentials loses the original's unexported opts field ([]option.ClientOption,
// used by the SDK's own tests only): keeping it would link google.golang.org/api/option.
type GoogleDefaultCredentials struct {
}

func (c GoogleDefaultCredentials) Name() string {
	return "google-id"
}

// Configure declines exactly when the original does; see GoogleCredentials.Configure.
func (c GoogleDefaultCredentials) Configure(ctx context.Context, cfg *Config) (credentials.CredentialsProvider, error) {
	if err := unsupportedGroupRoleAssumption(cfg, c.Name()); err != nil {
		return nil, err
	}
	if cfg.GoogleServiceAccount == "" || !cfg.IsGcp() {
		return nil, nil
	}
	return nil, fmt.Errorf("auth type %q is not linked into this build (databricks-cmk-rotator ships without the SDK's GCP credential providers; see build/sdkoverlay)", c.Name())
}
