package dbfake

import (
	"encoding/json"
	"net/http"
	"regexp"
)

func (s *Server) routeTable() []route {
	acct := `^/api/2\.0/accounts/([^/]+)`
	r := func(method, pattern string, sc scope, h func(*call) (any, error)) route {
		return route{method: method, pattern: regexp.MustCompile(pattern), scope: sc, handle: h}
	}
	routes := []route{
		r(http.MethodGet, `^/\.well-known/databricks-config$`, scopePublic, s.wellKnownConfig),
		r(http.MethodGet, `^/oidc/\.well-known/oauth-authorization-server$`, scopePublic, s.oidcDiscovery),
		r(http.MethodGet, `^/oidc/accounts/([^/]+)/\.well-known/oauth-authorization-server$`, scopePublic, s.accountOIDCDiscovery),
		r(http.MethodPost, `^/oidc/v1/token$`, scopePublic, s.issueToken),
		r(http.MethodPost, `^/oidc/accounts/([^/]+)/v1/token$`, scopePublic, s.issueToken),

		r(http.MethodPost, acct+`/customer-managed-keys/?$`, scopeAccount, s.createKeyConfig),
		r(http.MethodGet, acct+`/customer-managed-keys/?$`, scopeAccount, s.listKeyConfigs),
		r(http.MethodGet, acct+`/customer-managed-keys/([^/]+)$`, scopeAccount, s.getKeyConfig),
		r(http.MethodDelete, acct+`/customer-managed-keys/([^/]+)$`, scopeAccount, s.deleteKeyConfig),
		r(http.MethodGet, acct+`/credentials/?$`, scopeAccount, s.listCredentials),
		r(http.MethodGet, acct+`/credentials/([^/]+)$`, scopeAccount, s.getCredential),
		r(http.MethodGet, acct+`/workspaces/?$`, scopeAccount, s.listWorkspaces),
		r(http.MethodGet, acct+`/workspaces/([^/]+)$`, scopeAccount, s.getWorkspace),
		r(http.MethodPatch, acct+`/workspaces/([^/]+)$`, scopeAccount, s.patchWorkspace),

		r(http.MethodGet, `^/api/2\.1/clusters/list$`, scopeWorkspace, s.listClusters),
		r(http.MethodGet, `^/api/2\.1/clusters/get$`, scopeWorkspace, s.getCluster),
		r(http.MethodPost, `^/api/2\.1/clusters/delete$`, scopeWorkspace, s.deleteCluster),
		r(http.MethodPost, `^/api/2\.1/clusters/start$`, scopeWorkspace, s.startClusterCall),
		r(http.MethodGet, `^/api/2\.0/instance-pools/list$`, scopeWorkspace, s.listPools),
		r(http.MethodGet, `^/api/2\.0/instance-pools/get$`, scopeWorkspace, s.getPool),
		r(http.MethodPost, `^/api/2\.0/instance-pools/edit$`, scopeWorkspace, s.editPool),
		r(http.MethodGet, `^/api/2\.0/sql/warehouses/?$`, scopeWorkspace, s.listWarehouses),
		r(http.MethodGet, `^/api/2\.0/sql/warehouses/([^/]+)$`, scopeWorkspace, s.getWarehouse),
		r(http.MethodPost, `^/api/2\.0/sql/warehouses/([^/]+)/stop$`, scopeWorkspace, s.stopWarehouse),
		r(http.MethodPost, `^/api/2\.0/sql/warehouses/([^/]+)/start$`, scopeWorkspace, s.startWarehouse),
		r(http.MethodGet, `^/api/2\.0/pipelines/?$`, scopeWorkspace, s.listPipelines),
		r(http.MethodGet, `^/api/2\.0/pipelines/([^/]+)$`, scopeWorkspace, s.getPipeline),
		r(http.MethodPost, `^/api/2\.0/pipelines/([^/]+)/stop$`, scopeWorkspace, s.stopPipeline),
		r(http.MethodPost, `^/api/2\.0/pipelines/([^/]+)/updates$`, scopeWorkspace, s.startPipelineUpdate),
	}
	for i := range routes {
		p := routes[i].pattern.String()
		switch {
		case p == `^/oidc/v1/token$` || p == `^/oidc/accounts/([^/]+)/v1/token$`:
			routes[i].redactBody = true
		case p == acct+`/workspaces/([^/]+)$`:
			routes[i].workspaceInPath = true
		}
	}
	return routes
}

// decodeBody decodes a JSON request body into an SDK request type. An empty body decodes as {}.
func decodeBody(c *call, v any) error {
	if len(c.body) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return badRequest("MALFORMED_REQUEST", "Could not parse request body: %v", err)
	}
	return nil
}

// reshape re-decodes v as T through JSON. The list and get answers of one object are distinct SDK
// types with the same wire form (InstancePoolAndStats and GetInstancePool, say).
func reshape[T any](v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}
