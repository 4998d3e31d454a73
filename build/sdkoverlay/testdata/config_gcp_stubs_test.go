// Put into the SDK copy's config package by build/sdkoverlay's tests (with -overlay, in place of
// the SDK's own tests of that package, which need modules this repository does not require):
// the GCP credential stubs decline what the originals declined and name themselves otherwise.

package config

import (
	"context"
	"strings"
	"testing"
)

func TestGCPStubsDeclineWhatTheOriginalsDeclinedAndRefuseTheRest(t *testing.T) {
	ctx := context.Background()
	for _, s := range []CredentialsStrategy{GoogleCredentials{}, GoogleDefaultCredentials{}} {
		for _, cfg := range []*Config{
			{Host: "https://dbc-1234.cloud.databricks.com", ClientID: "id", ClientSecret: "secret"},
			{Host: "https://dbc-1234.cloud.databricks.com", GoogleCredentials: "{}", GoogleServiceAccount: "sa@p.iam.gserviceaccount.com"},
			{Host: "https://accounts.gcp.databricks.com"},
		} {
			p, err := s.Configure(ctx, cfg)
			if p != nil || err != nil {
				t.Fatalf("%s on %+v: %v, %v; the original declines (nil, nil)", s.Name(), cfg, p, err)
			}
		}
		gcp := &Config{Host: "https://1234.5.gcp.databricks.com", GoogleCredentials: "{}", GoogleServiceAccount: "sa@p.iam.gserviceaccount.com"}
		p, err := s.Configure(ctx, gcp)
		if p != nil || err == nil || !strings.Contains(err.Error(), s.Name()) || !strings.Contains(err.Error(), "build/sdkoverlay") {
			t.Fatalf("%s on a GCP configuration: %v, %v; want an error naming it and build/sdkoverlay", s.Name(), p, err)
		}
		grouped := &Config{Host: "https://1234.5.gcp.databricks.com", GoogleServiceAccount: "sa@p.iam.gserviceaccount.com", GroupID: "g"}
		if _, err := s.Configure(ctx, grouped); err == nil || !strings.Contains(err.Error(), "group role assumption") {
			t.Fatalf("%s with a group id: %v; the original refuses group role assumption first", s.Name(), err)
		}
	}
	if (GoogleCredentials{}).Name() != "google-credentials" || (GoogleDefaultCredentials{}).Name() != "google-id" {
		t.Fatal("the stubs must keep the originals' names: the default chain and auth_type match on them")
	}
}
