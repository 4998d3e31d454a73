// Package dbclient builds Databricks SDK clients for the account and for each workspace.
//
// Credentials come from AWS Secrets Manager in AWS (DATABRICKS_SECRET_ARN, a JSON document
// {"client_id": "...", "client_secret": "..."} of an OAuth M2M service principal) and from the
// standard DATABRICKS_* variables locally. Only the service APIs we call are constructed, which
// keeps each Lambda binary small (a full WorkspaceClient links every service of the SDK).
package dbclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/databricks/databricks-sdk-go/client"
	"github.com/databricks/databricks-sdk-go/config"
	"github.com/databricks/databricks-sdk-go/service/compute"
	"github.com/databricks/databricks-sdk-go/service/pipelines"
	"github.com/databricks/databricks-sdk-go/service/provisioning"
	"github.com/databricks/databricks-sdk-go/service/sql"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// Credentials authenticate to the account and to every workspace. Either Token (a PAT, for local
// sandboxes) or ClientID and ClientSecret (OAuth M2M, in AWS).
type Credentials struct {
	Token        string
	ClientID     string
	ClientSecret string
}

// String never prints a secret, so a Credentials value that reaches a log by accident is harmless.
func (c Credentials) String() string {
	switch {
	case c.ClientID != "":
		return "oauth-m2m(client_id=" + c.ClientID + ")"
	case c.Token != "":
		return "pat(redacted)"
	}
	return "none"
}

// GoString keeps %#v as safe as %v.
func (c Credentials) GoString() string { return c.String() }

// Settings say where the Databricks account is and how to reach its workspaces.
type Settings struct {
	AccountHost string
	AccountID   string
	// WorkspaceHostTemplate overrides the derived workspace host; "{deployment_name}" is replaced.
	WorkspaceHostTemplate string
	Credentials           Credentials
	// RateLimitPerSecond caps calls per client (the SDK's limiter); 0 keeps the SDK default.
	RateLimitPerSecond int
	// SecretARN and Secrets, when set, are where Credentials came from: when Databricks refuses
	// them, the secret is read again and the call retried once.
	SecretARN string
	Secrets   SecretReader
}

// SecretReader reads one secret string (Secrets Manager GetSecretValue, narrowed).
type SecretReader interface {
	SecretString(ctx context.Context, secretID string) (string, error)
}

// LoadSettings reads the Databricks settings from the environment lookup. When DATABRICKS_SECRET_ARN
// is set, the credentials come from that secret; otherwise from DATABRICKS_TOKEN or
// DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET. The error names every missing variable.
func LoadSettings(ctx context.Context, lookup func(string) (string, bool), secrets SecretReader) (Settings, error) {
	get := func(name string) string { v, _ := lookup(name); return strings.TrimSpace(v) }
	s := Settings{
		AccountHost:           strings.TrimRight(get("DATABRICKS_HOST"), "/"),
		AccountID:             get("DATABRICKS_ACCOUNT_ID"),
		WorkspaceHostTemplate: get("DATABRICKS_WORKSPACE_HOST"),
	}
	var missing []string
	if s.AccountHost == "" {
		missing = append(missing, "DATABRICKS_HOST")
	}
	if s.AccountID == "" {
		missing = append(missing, "DATABRICKS_ACCOUNT_ID")
	}
	if rate := get("DATABRICKS_RATE_LIMIT"); rate != "" {
		n, err := strconv.Atoi(rate)
		if err != nil || n < 1 {
			return Settings{}, fmt.Errorf("DATABRICKS_RATE_LIMIT must be a positive integer, got %q", rate)
		}
		s.RateLimitPerSecond = n
	}
	if arn := get("DATABRICKS_SECRET_ARN"); arn != "" {
		if secrets == nil {
			return Settings{}, fmt.Errorf("DATABRICKS_SECRET_ARN is set but no Secrets Manager client was given")
		}
		raw, err := secrets.SecretString(ctx, arn)
		if err != nil {
			return Settings{}, fmt.Errorf("reading Databricks credentials from secret %s: %w", arn, err)
		}
		creds, err := parseSecret(arn, raw)
		if err != nil {
			return Settings{}, err
		}
		s.Credentials, s.SecretARN, s.Secrets = creds, arn, secrets
	} else {
		s.Credentials = Credentials{
			Token:        get("DATABRICKS_TOKEN"),
			ClientID:     get("DATABRICKS_CLIENT_ID"),
			ClientSecret: get("DATABRICKS_CLIENT_SECRET"),
		}
		if s.Credentials.Token == "" && (s.Credentials.ClientID == "" || s.Credentials.ClientSecret == "") {
			missing = append(missing, "DATABRICKS_SECRET_ARN (or DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET)")
		}
	}
	if len(missing) > 0 {
		return Settings{}, fmt.Errorf("missing configuration: %s", strings.Join(missing, ", "))
	}
	if _, err := url.Parse(s.AccountHost); err != nil {
		return Settings{}, fmt.Errorf("DATABRICKS_HOST %q is not a URL: %w", s.AccountHost, err)
	}
	return s, nil
}

// parseSecret reads the secret document {"client_id", "client_secret"}.
func parseSecret(arn, raw string) (Credentials, error) {
	var doc struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	// The secret's content must never reach an error message: report only its shape.
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return Credentials{}, fmt.Errorf("secret %s is not a JSON object {\"client_id\",\"client_secret\"}", arn)
	}
	if doc.ClientID == "" || doc.ClientSecret == "" {
		return Credentials{}, fmt.Errorf("secret %s must hold non-empty \"client_id\" and \"client_secret\"", arn)
	}
	return Credentials{ClientID: doc.ClientID, ClientSecret: doc.ClientSecret}, nil
}

// WorkspaceHost returns the URL of a workspace. With a template it substitutes {deployment_name};
// otherwise it replaces the first DNS label of the account host with the deployment name, as the
// Terraform provider does: accounts.cloud.databricks.com -> <deployment>.cloud.databricks.com,
// accounts.cloud.databricks.us and accounts-dod.cloud.databricks.mil likewise (the SDK's own helper
// gets the DoD host wrong).
func WorkspaceHost(accountHost, deploymentName, template string) (string, error) {
	if template != "" {
		if strings.Contains(template, "{deployment_name}") && deploymentName == "" {
			return "", fmt.Errorf("workspace has no deployment_name to put into DATABRICKS_WORKSPACE_HOST %q", template)
		}
		return strings.TrimRight(strings.ReplaceAll(template, "{deployment_name}", deploymentName), "/"), nil
	}
	if deploymentName == "" {
		return "", fmt.Errorf("workspace has no deployment_name, so its host cannot be derived; set DATABRICKS_WORKSPACE_HOST")
	}
	u, err := url.Parse(accountHost)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("account host %q is not a URL", accountHost)
	}
	labels := strings.SplitN(u.Hostname(), ".", 2)
	if len(labels) != 2 {
		return "", fmt.Errorf("account host %q has no domain to derive workspace hosts from; set DATABRICKS_WORKSPACE_HOST", accountHost)
	}
	u.Host = deploymentName + "." + labels[1]
	if port := u.Port(); port != "" {
		u.Host += ":" + port
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Account is the account-level API surface the rotator uses.
type Account struct {
	Workspaces     *provisioning.WorkspacesAPI
	EncryptionKeys *provisioning.EncryptionKeysAPI
	Credentials    *provisioning.CredentialsAPI
}

// Workspace is the workspace-level API surface the rotator uses.
type Workspace struct {
	Clusters      *compute.ClustersAPI
	InstancePools *compute.InstancePoolsAPI
	Warehouses    *sql.WarehousesAPI
	Pipelines     *pipelines.PipelinesAPI
}

// Factory builds clients once per Lambda container and reuses them across invocations, so that
// OAuth tokens are cached between warm starts.
type Factory struct {
	settings Settings
	secret   *secretSource

	mu         sync.Mutex
	account    *Account
	workspaces map[string]*Workspace
}

// NewFactory returns a Factory for the settings.
func NewFactory(s Settings) *Factory {
	return &Factory{settings: s, workspaces: map[string]*Workspace{},
		secret: &secretSource{secretARN: s.SecretARN, reader: s.Secrets, creds: s.Credentials}}
}

// AccountID is the Databricks account id the factory talks to.
func (f *Factory) AccountID() string { return f.settings.AccountID }

func (f *Factory) config(host, workspaceID string) *config.Config {
	cfg := &config.Config{
		Host:               host,
		AccountID:          f.settings.AccountID,
		WorkspaceID:        workspaceID,
		RateLimitPerSecond: f.settings.RateLimitPerSecond,
		// Step Functions owns waiting and retrying; the SDK only absorbs short bursts of 429/503. The
		// budget stays well inside the shortest task timeout (60 s), so that an outage surfaces as
		// DatabricksUnavailable (retried with backoff) rather than as a Lambda timeout.
		RetryTimeoutSeconds: 20,
		HTTPTimeoutSeconds:  30,
		// Settings are resolved once, above; neither DATABRICKS_* variables nor a ~/.databrickscfg on a
		// developer machine may add a second credential or change the host behind our back.
		Loaders: []config.Loader{explicitOnly{}},
	}
	c, _ := f.secret.current()
	switch {
	case c.Token != "":
		cfg.Token, cfg.AuthType = c.Token, "pat"
	case f.settings.Secrets != nil && f.settings.SecretARN != "":
		// Each client has its own token endpoint, hence its own strategy; they share the secret.
		auth := &renewingAuth{src: f.secret, base: http.DefaultTransport}
		cfg.ClientID, cfg.ClientSecret, cfg.AuthType = c.ClientID, c.ClientSecret, "oauth-m2m"
		cfg.Credentials, cfg.HTTPTransport = auth, auth
	default:
		cfg.ClientID, cfg.ClientSecret, cfg.AuthType = c.ClientID, c.ClientSecret, "oauth-m2m"
	}
	return cfg
}

// Account returns the account-level APIs.
func (f *Factory) Account() (*Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.account != nil {
		return f.account, nil
	}
	c, err := client.New(f.config(f.settings.AccountHost, ""))
	if err != nil {
		return nil, taskerr.Errorf[taskerr.DatabricksRequestFailed]("configuring the Databricks account client for %s: %v", f.settings.AccountHost, err)
	}
	f.account = &Account{Workspaces: provisioning.NewWorkspaces(c), EncryptionKeys: provisioning.NewEncryptionKeys(c), Credentials: provisioning.NewCredentials(c)}
	return f.account, nil
}

// Workspace returns the workspace-level APIs for one workspace.
func (f *Factory) Workspace(ws rotation.WorkspaceTarget) (*Workspace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w, ok := f.workspaces[ws.WorkspaceID]; ok {
		return w, nil
	}
	host, err := WorkspaceHost(f.settings.AccountHost, ws.DeploymentName, f.settings.WorkspaceHostTemplate)
	if err != nil {
		return nil, taskerr.Errorf[taskerr.InvalidInput]("workspace %s: %v", ws.WorkspaceID, err)
	}
	c, err := client.New(f.config(host, ws.WorkspaceID))
	if err != nil {
		return nil, taskerr.Errorf[taskerr.DatabricksRequestFailed]("configuring the Databricks client for workspace %s at %s: %v", ws.WorkspaceID, host, err)
	}
	w := &Workspace{
		Clusters:      compute.NewClusters(c),
		InstancePools: compute.NewInstancePools(c),
		Warehouses:    sql.NewWarehouses(c),
		Pipelines:     pipelines.NewPipelines(c),
	}
	f.workspaces[ws.WorkspaceID] = w
	return w, nil
}

// explicitOnly is a config loader that loads nothing: the SDK's default loaders would read the
// environment and config files (an empty Loaders slice means "use the defaults").
type explicitOnly struct{}

func (explicitOnly) Name() string                   { return "explicit-only" }
func (explicitOnly) Configure(*config.Config) error { return nil }

// GetWorkspace reads one workspace.
func (a *Account) GetWorkspace(ctx context.Context, id int64) (*provisioning.Workspace, error) {
	return a.Workspaces.GetByWorkspaceId(ctx, id)
}

// GetCredential reads one credential configuration (the workspace's cross-account role).
func (a *Account) GetCredential(ctx context.Context, id string) (*provisioning.Credential, error) {
	return a.Credentials.GetByCredentialsId(ctx, id)
}

// ListKeyConfigs lists the account's key configurations (one page: the API does not paginate).
func (a *Account) ListKeyConfigs(ctx context.Context) ([]provisioning.CustomerManagedKey, error) {
	return a.EncryptionKeys.List(ctx)
}

// ListWorkspaces lists every workspace of the account (one page: the API does not paginate).
func (a *Account) ListWorkspaces(ctx context.Context) ([]provisioning.Workspace, error) {
	return a.Workspaces.List(ctx)
}

// DeleteKeyConfig deletes a key configuration. Databricks refuses to delete one a running workspace
// uses, but the caller must not rely on that: it checks first.
func (a *Account) DeleteKeyConfig(ctx context.Context, id string) error {
	_, err := a.EncryptionKeys.DeleteByCustomerManagedKeyId(ctx, id)
	return err
}

// CreateKeyConfig registers a key configuration.
func (a *Account) CreateKeyConfig(ctx context.Context, req provisioning.CreateCustomerManagedKeyRequest) (*provisioning.CustomerManagedKey, error) {
	return a.EncryptionKeys.Create(ctx, req)
}

// UpdateWorkspace sends a PATCH and does not wait: waiting belongs to the state machine.
func (a *Account) UpdateWorkspace(ctx context.Context, req provisioning.UpdateWorkspaceRequest) error {
	_, err := a.Workspaces.Update(ctx, req)
	return err
}

type secretsManager struct{ client *secretsmanager.Client }

func (s secretsManager) SecretString(ctx context.Context, id string) (string, error) {
	out, err := s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.SecretString), nil
}

// FromEnv builds a Factory from the environment, reading the credentials from Secrets Manager when
// DATABRICKS_SECRET_ARN is set.
func FromEnv(ctx context.Context, lookup func(string) (string, bool), awsCfg aws.Config) (*Factory, error) {
	settings, err := LoadSettings(ctx, lookup, secretsManager{secretsmanager.NewFromConfig(awsCfg)})
	if err != nil {
		return nil, err
	}
	return NewFactory(settings), nil
}

// AccountFromEnv builds the account-level APIs from the environment, for the tasks that use only
// those; it also returns the account id.
func AccountFromEnv(ctx context.Context, lookup func(string) (string, bool), awsCfg aws.Config) (*Account, string, error) {
	factory, err := FromEnv(ctx, lookup, awsCfg)
	if err != nil {
		return nil, "", err
	}
	account, err := factory.Account()
	return account, factory.AccountID(), err
}
