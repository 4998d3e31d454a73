package statemachine

// These tests hold template.yaml against the code, the Makefile and the ASL definitions, offline: no
// AWS, no SAM CLI, no cfn-lint. The template is read with yaml.v3 nodes (goformation drops
// DefinitionSubstitutions, policy templates and EventBridge rules with a RetryPolicy) and its
// intrinsics are evaluated for imagined deployments (cfn_test.go).

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/validate"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/wire"
)

const modulePath = "github.com/cmk-rotator/databricks-cmk-rotator"

// deploymentScenarios are the parameter sets every resolving test runs under: the defaults (the stack
// creates its bus, the key guard only warns, the secret uses aws/secretsmanager) and the other branch
// of every condition.
var deploymentScenarios = []struct {
	name      string
	overrides map[string]string
}{
	{"defaults", nil},
	{"existing bus, undo key changes, secret CMK, e-mail, GovCloud DoD", map[string]string{
		"AWS::Partition":                     "aws-us-gov",
		"EventBusName":                       "default",
		"UndoKeyChanges":                     "true",
		"DatabricksSecretKmsKeyArn":          "arn:aws-us-gov:kms:us-west-2:111122223333:key/5e6f7a8b-1111-4000-8000-000000000001",
		"DatabricksSecretArn":                "arn:aws-us-gov:secretsmanager:us-west-2:111122223333:secret:databricks-cmk-rotator/oauth-AbCdEf",
		"AlertEmail":                         "oncall@example.com",
		"DatabricksAccountHost":              "https://accounts-dod.cloud.databricks.mil",
		"AllowPolicyWithoutAccountCondition": "true",
	}},
}

func eachDeployment(t *testing.T, tpl *cfnTemplate, test func(t *testing.T, d *deployment)) {
	for _, sc := range deploymentScenarios {
		t.Run(sc.name, func(t *testing.T) { test(t, deploy(t, tpl, sc.overrides)) })
	}
}

// expectedBus is the bus the rotator publishes to in a deployment: its own, or the named one.
func expectedBus(d *deployment) (name, arn string) {
	if d.params["EventBusName"] == "" {
		return testStackName, d.arn("events", "event-bus/"+testStackName)
	}
	return d.params["EventBusName"], d.arn("events", "event-bus/"+d.params["EventBusName"])
}

// ---------------------------------------------------------------------------------------------------
// Functions: runtime, build, Makefile
// ---------------------------------------------------------------------------------------------------

// makefileFunctions reads the Makefile's FUNCTIONS list (LogicalId:directory).
func makefileFunctions(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	block := regexp.MustCompile(`(?s)FUNCTIONS\s*:=(.*?)\n\s*\n`).FindSubmatch(raw)
	require.NotNil(t, block, "the Makefile has no FUNCTIONS := list")
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`([A-Za-z0-9]+):([a-z0-9-]+)`).FindAllSubmatch(block[1], -1) {
		out[string(m[1])] = string(m[2])
	}
	return out
}

func TestEveryFunctionRunsABootstrapOnProvidedAl2023Arm64WithJSONLogsAndTracing(t *testing.T) {
	tpl := loadTemplate(t)
	functions := tpl.resourcesOfType("AWS::Serverless::Function")
	require.NotEmpty(t, functions)
	for _, id := range functions {
		t.Run(id, func(t *testing.T) {
			metadata, _ := tpl.resource(id)["Metadata"].(map[string]any)
			assert.Equal(t, "makefile", metadata["BuildMethod"], "Metadata.BuildMethod")
			p := tpl.functionProperties(id)
			assert.Equal(t, ".", p["CodeUri"], "CodeUri (the root Makefile builds every function)")
			assert.Equal(t, "provided.al2023", p["Runtime"])
			assert.Equal(t, []any{"arm64"}, p["Architectures"])
			assert.Equal(t, "bootstrap", p["Handler"])
			assert.Equal(t, "Active", p["Tracing"])
			logging, _ := p["LoggingConfig"].(map[string]any)
			assert.Equal(t, "JSON", logging["LogFormat"], "LoggingConfig.LogFormat: the code logs JSON only when AWS_LAMBDA_LOG_FORMAT=JSON")
			assert.IsType(t, 0, p["MemorySize"], "MemorySize")
			assert.IsType(t, 0, p["Timeout"], "Timeout")
			assert.NotContains(t, tpl.properties(id), "Role", "a function with its own Role escapes the Policies checks")
		})
	}
}

func TestEveryFunctionHasAMakefileTargetThatBuildsItsDirectoryAsAStaticArm64Bootstrap(t *testing.T) {
	tpl := loadTemplate(t)
	dirs := makefileFunctions(t)
	artifacts := t.TempDir()
	for _, id := range tpl.resourcesOfType("AWS::Serverless::Function") {
		t.Run(id, func(t *testing.T) {
			dir, ok := dirs[id]
			require.True(t, ok, "the Makefile's FUNCTIONS does not list %s, so `sam build` has no build-%s target", id, id)
			assert.FileExists(t, filepath.Join("..", "functions", dir, "main.go"))
			cmd := exec.Command("make", "--no-print-directory", "-n", "build-"+id, "ARTIFACTS_DIR="+artifacts)
			cmd.Dir = ".."
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "make -n build-%s: %s", id, out)
			recipe := string(out)
			for _, want := range []string{"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "lambda.norpc", "-trimpath",
				"-o " + artifacts + "/bootstrap", "./functions/" + dir} {
				assert.Contains(t, recipe, want, "build-%s", id)
			}
		})
	}
}

func TestEveryFunctionTheMakefileListsIsDeployedAndEveryFunctionDirectoryIsListed(t *testing.T) {
	tpl := loadTemplate(t)
	dirs := makefileFunctions(t)
	for id := range dirs {
		assert.Equal(t, "AWS::Serverless::Function", tpl.resourceType(id), "the Makefile builds %s, which template.yaml does not deploy", id)
	}
	mains, err := filepath.Glob("../functions/*/main.go")
	require.NoError(t, err)
	listed := map[string]bool{}
	for _, dir := range dirs {
		listed[dir] = true
	}
	for _, m := range mains {
		dir := filepath.Base(filepath.Dir(m))
		assert.True(t, listed[dir], "functions/%s is in no Makefile FUNCTIONS entry, so it is never deployed", dir)
	}
}

func TestTheMakefileBuildsAStaticAarch64Bootstrap(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles a function; skipped with -short")
	}
	artifacts := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "build-ValidateFunction", "ARTIFACTS_DIR="+artifacts)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make build-ValidateFunction: %s", out)

	path := filepath.Join(artifacts, "bootstrap")
	info, err := os.Stat(path)
	require.NoError(t, err, "SAM deploys ARTIFACTS_DIR/bootstrap")
	assert.NotZero(t, info.Mode()&0o111, "bootstrap is not executable")
	f, err := elf.Open(path)
	require.NoError(t, err, "bootstrap is not an ELF binary")
	defer f.Close()
	assert.Equal(t, elf.EM_AARCH64, f.Machine, "Architectures: [arm64] needs an aarch64 binary")
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "bootstrap asks for a dynamic loader; provided.al2023 needs a static binary (CGO_ENABLED=0)")
		assert.NotEqual(t, elf.PT_DYNAMIC, p.Type, "bootstrap is dynamically linked")
	}
	assert.Nil(t, f.Section(".dynamic"), "bootstrap has a .dynamic section")
}

func TestNoFunctionOutlivesTheTaskStateThatWaitsForIt(t *testing.T) {
	tpl := loadTemplate(t)
	for _, sm := range stateMachines(t, tpl) {
		walkStates(sm.definition, func(name string, s map[string]any) {
			fn := sm.invokedFunction(tpl, s)
			limit, hasLimit := s["TimeoutSeconds"].(float64)
			if fn == "" || !hasLimit {
				return
			}
			timeout, _ := tpl.functionProperties(fn)["Timeout"].(int)
			assert.LessOrEqual(t, timeout, int(limit),
				"%s: %s may run %d s but state %s gives up after %.0f s and retries, while the first invocation keeps working",
				sm.id, fn, timeout, name, limit)
		})
	}
}

// ---------------------------------------------------------------------------------------------------
// State machines: substitutions and what their roles may do
// ---------------------------------------------------------------------------------------------------

type stateMachine struct {
	id            string
	file          string
	text          string
	definition    map[string]any
	substitutions map[string]any
}

func stateMachines(t *testing.T, tpl *cfnTemplate) []stateMachine {
	t.Helper()
	var out []stateMachine
	for _, id := range tpl.resourcesOfType("AWS::Serverless::StateMachine") {
		p := tpl.properties(id)
		uri, ok := p["DefinitionUri"].(string)
		require.True(t, ok, "%s: DefinitionUri must be a local file", id)
		raw, err := os.ReadFile(filepath.Join("..", uri))
		require.NoError(t, err, "%s: DefinitionUri", id)
		var def map[string]any
		require.NoError(t, json.Unmarshal(raw, &def), "%s is not JSON", uri)
		subs, _ := p["DefinitionSubstitutions"].(map[string]any)
		out = append(out, stateMachine{id: id, file: uri, text: string(raw), definition: def, substitutions: subs})
	}
	require.NotEmpty(t, out)
	return out
}

func walkStates(def map[string]any, visit func(name string, s map[string]any)) {
	states, _ := def["States"].(map[string]any)
	for name, raw := range states {
		s, _ := raw.(map[string]any)
		visit(name, s)
		for _, key := range []string{"ItemProcessor", "Iterator"} {
			if sub, ok := s[key].(map[string]any); ok {
				walkStates(sub, visit)
			}
		}
		if branches, ok := s["Branches"].([]any); ok {
			for _, b := range branches {
				if sub, ok := b.(map[string]any); ok {
					walkStates(sub, visit)
				}
			}
		}
	}
}

var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// substitutedFunction returns the function a "${Name}" placeholder stands for (GetAtt F.Arn), or "".
func (sm stateMachine) substitutedFunction(tpl *cfnTemplate, value string) string {
	m := placeholder.FindStringSubmatch(value)
	if m == nil || m[0] != value {
		return ""
	}
	sub, _ := sm.substitutions[m[1]].(map[string]any)
	ga, _ := sub["Fn::GetAtt"].([]any)
	if len(ga) == 2 && tpl.resourceType(fmt.Sprint(ga[0])) == "AWS::Serverless::Function" {
		return fmt.Sprint(ga[0])
	}
	return ""
}

// invokedFunction is the function a Task state invokes, directly or through lambda:invoke.
func (sm stateMachine) invokedFunction(tpl *cfnTemplate, s map[string]any) string {
	if s["Type"] != "Task" {
		return ""
	}
	resource, _ := s["Resource"].(string)
	if fn := sm.substitutedFunction(tpl, resource); fn != "" {
		return fn
	}
	if strings.HasPrefix(resource, "arn:aws:states:::lambda:invoke") {
		for _, key := range []string{"Parameters", "Arguments"} {
			params, _ := s[key].(map[string]any)
			if name, ok := params["FunctionName"].(string); ok {
				return sm.substitutedFunction(tpl, name)
			}
		}
	}
	return ""
}

func TestEveryPlaceholderInADefinitionHasASubstitutionAndEverySubstitutionIsUsed(t *testing.T) {
	tpl := loadTemplate(t)
	for _, sm := range stateMachines(t, tpl) {
		used := map[string]bool{}
		for _, m := range placeholder.FindAllStringSubmatch(sm.text, -1) {
			used[m[1]] = true
		}
		for name := range used {
			assert.Contains(t, sm.substitutions, name, "%s uses ${%s}, which %s.DefinitionSubstitutions does not define", sm.file, name, sm.id)
		}
		for name := range sm.substitutions {
			assert.True(t, used[name], "%s.DefinitionSubstitutions defines %s, which %s never uses", sm.id, name, sm.file)
		}
	}
}

// iamResourceMatches matches an IAM resource pattern (with * and ?) against an ARN.
func iamResourceMatches(pattern, arn string) bool {
	re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	return regexp.MustCompile(re).MatchString(arn)
}

func TestEachStateMachineMayDoWhatItsDefinitionDoesAndNothingElse(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		all := d.statements()
		for _, sm := range stateMachines(t, tpl) {
			subs, _ := d.resolve(sm.substitutions).(map[string]any)
			fill := func(s string) string {
				return placeholder.ReplaceAllStringFunc(s, func(m string) string { return fmt.Sprint(subs[m[2:len(m)-1]]) })
			}
			type need struct{ action, resource string }
			var needs []need
			walkStates(sm.definition, func(name string, s map[string]any) {
				if fn := sm.invokedFunction(tpl, s); fn != "" {
					needs = append(needs, need{"lambda:InvokeFunction", fmt.Sprint(d.getAtt(fn, "Arn"))})
				}
				params, _ := s["Parameters"].(map[string]any)
				switch s["Resource"] {
				case "arn:aws:states:::events:putEvents":
					entries, _ := params["Entries"].([]any)
					for _, e := range entries {
						entry, _ := e.(map[string]any)
						bus := fill(fmt.Sprint(entry["EventBusName"]))
						_, busARN := expectedBus(d)
						assert.Equal(t, busARN, d.arn("events", "event-bus/"+bus), "%s state %s publishes to another bus than the rotator's", sm.id, name)
						needs = append(needs, need{"events:PutEvents", d.arn("events", "event-bus/"+bus)})
					}
				case "arn:aws:states:::states:startExecution":
					needs = append(needs, need{"states:StartExecution", fill(fmt.Sprint(params["StateMachineArn"]))})
				case "arn:aws:states:::states:startExecution.sync", "arn:aws:states:::states:startExecution.sync:2":
					// Waiting for a child: Step Functions describes it, stops it when the parent is stopped,
					// and hears of its end through its managed rule (the policy AWS documents for .sync).
					child := fill(fmt.Sprint(params["StateMachineArn"]))
					executions := strings.Replace(child, ":stateMachine:", ":execution:", 1) + ":*"
					rule := d.arn("events", "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule")
					needs = append(needs, need{"states:StartExecution", child},
						need{"states:DescribeExecution", executions}, need{"states:StopExecution", executions},
						need{"events:PutTargets", rule}, need{"events:PutRule", rule}, need{"events:DescribeRule", rule})
				}
			})
			granted := grants(all, tpl, sm.id)
			for _, n := range needs {
				ok := slices.ContainsFunc(granted, func(s statement) bool {
					return hasAction(s, n.action) && slices.ContainsFunc(s.resources(), func(r string) bool { return iamResourceMatches(r, n.resource) })
				})
				assert.True(t, ok, "%s's definition needs %s on %s, which its Policies do not grant", sm.id, n.action, n.resource)
			}
			for _, s := range granted {
				if slices.ContainsFunc(s.actions(), func(a string) bool { return strings.HasPrefix(a, "logs:") }) {
					continue // execution logging, checked by TestEveryWildcardResourceSaysWhy
				}
				for _, r := range s.resources() {
					ok := slices.ContainsFunc(needs, func(n need) bool { return hasAction(s, n.action) && iamResourceMatches(r, n.resource) })
					assert.True(t, ok, "%s may %v on %s, which its definition never does", sm.id, s.actions(), r)
				}
			}
		}
	})
}

// ---------------------------------------------------------------------------------------------------
// Environment: what the code reads
// ---------------------------------------------------------------------------------------------------

var databricksVariables = []string{"DATABRICKS_HOST", "DATABRICKS_ACCOUNT_ID", "DATABRICKS_SECRET_ARN"}

// callsDatabricksByDesign is what each function is meant to do; the code decides where it exists
// (functionCallsDatabricks), and the two must agree.
var callsDatabricksByDesign = map[string]bool{
	"ValidateFunction": true, "RegisterKeyConfigFunction": true, "InventoryFunction": true,
	"StopComputeFunction": true, "ComputeStatusFunction": true, "PatchWorkspaceFunction": true,
	"WorkspaceStatusFunction": true, "RestartComputeFunction": true, "KeyGuardFunction": true,
	"KeyConfigHygieneFunction": true, "KeyAgeCheckFunction": true,
}

// wireDatabricksBuilders are the internal/wire functions that build Databricks clients, directly or
// through another wire function.
func wireDatabricksBuilders(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("../internal/wire/*.go")
	require.NoError(t, err)
	calls := map[string]map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err)
		for _, decl := range file.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Recv != nil {
				continue
			}
			called := map[string]bool{}
			ast.Inspect(fd, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if id, ok := c.Fun.(*ast.Ident); ok {
						called[id.Name] = true
					}
				}
				return true
			})
			calls[fd.Name.Name] = called
		}
	}
	builders := map[string]bool{"Databricks": true}
	for changed := true; changed; {
		changed = false
		for fn, called := range calls {
			for c := range called {
				if builders[c] && !builders[fn] {
					builders[fn], changed = true, true
				}
			}
		}
	}
	return builders
}

// functionCallsDatabricks asks the Go toolchain whether functions/<dir> links internal/dbclient, the
// only package that builds Databricks clients.
func functionCallsDatabricks(t *testing.T, dir string, _ map[string]bool) (calls, exists bool) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("..", "functions", dir, "main.go")); err != nil {
		return false, false
	}
	out, err := exec.Command("go", "list", "-deps", "../functions/"+dir).CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == modulePath+"/internal/dbclient" {
			return true, true
		}
	}
	return false, true
}

func TestEveryFunctionThatCallsDatabricksGetsTheAccountAndTheSecretAndNoOtherDoes(t *testing.T) {
	tpl := loadTemplate(t)
	dirs := makefileFunctions(t)
	builders := wireDatabricksBuilders(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		for _, id := range tpl.resourcesOfType("AWS::Serverless::Function") {
			needs := callsDatabricksByDesign[id]
			if dir, listed := dirs[id]; listed {
				if calls, exists := functionCallsDatabricks(t, dir, builders); exists {
					assert.Equal(t, needs, calls, "%s: functions/%s/main.go disagrees with callsDatabricksByDesign", id, dir)
					needs = calls
				}
			}
			env := d.env(id)
			for name := range env {
				assert.NotContains(t, []string{"DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}, name,
					"%s: credentials come from DATABRICKS_SECRET_ARN in AWS, never from the environment", id)
			}
			readsSecret := slices.ContainsFunc(grants(d.statements(), tpl, id), func(s statement) bool { return hasAction(s, "secretsmanager:GetSecretValue") })
			if !needs {
				for _, name := range databricksVariables {
					assert.NotContains(t, env, name, "%s does not call Databricks", id)
				}
				assert.False(t, readsSecret, "%s does not call Databricks but may read its credentials", id)
				continue
			}
			assert.Equal(t, d.params["DatabricksAccountHost"], env["DATABRICKS_HOST"], "%s DATABRICKS_HOST", id)
			assert.Equal(t, d.params["DatabricksAccountId"], env["DATABRICKS_ACCOUNT_ID"], "%s DATABRICKS_ACCOUNT_ID", id)
			assert.Equal(t, d.params["DatabricksSecretArn"], env["DATABRICKS_SECRET_ARN"], "%s DATABRICKS_SECRET_ARN", id)
			assert.True(t, readsSecret, "%s calls Databricks but may not read the secret", id)
		}
	})
}

func TestTheTriggerStartsTheRotationStateMachineAndIgnoresEveryRoleOfTheRotator(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		env := d.env("TriggerFunction")
		assert.Equal(t, d.ref("RotationStateMachine"), env["STATE_MACHINE_ARN"])
		bus, _ := expectedBus(d)
		assert.Equal(t, bus, env["EVENT_BUS_NAME"])
		assert.Equal(t, d.params["AliasPrefix"], env["ALIAS_PREFIX"])
		assert.Equal(t, d.params["TagPrefix"], env["TAG_PREFIX"])
		var roles []string
		for _, fn := range tpl.resourcesOfType("AWS::Serverless::Function") {
			roles = append(roles, fmt.Sprint(d.getAtt(fn+"Role", "Arn")))
		}
		ignored := strings.Split(env["IGNORED_PRINCIPAL_ARNS"], ",")
		assert.ElementsMatch(t, roles, ignored, "IGNORED_PRINCIPAL_ARNS must name the role of every function")

		cfg, err := trigger.LoadConfig(lookupIn(env))
		require.NoError(t, err, "the trigger would not start with this environment")
		assert.Equal(t, env["STATE_MACHINE_ARN"], cfg.StateMachineARN)
		assert.Len(t, cfg.IgnoredPrincipalARNs, len(roles))
	})
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

type secretStub struct{}

func (secretStub) SecretString(context.Context, string) (string, error) {
	return `{"client_id":"cid","client_secret":"not-a-real-secret"}`, nil
}

func TestTheEnvironmentPassesTheCodesOwnConfigurationChecks(t *testing.T) {
	tpl := loadTemplate(t)
	hosts, _ := tpl.section("Parameters")["DatabricksAccountHost"].(map[string]any)["AllowedValues"].([]any)
	require.NotEmpty(t, hosts)
	for _, host := range hosts {
		t.Run(fmt.Sprint(host), func(t *testing.T) {
			d := deploy(t, tpl, map[string]string{"DatabricksAccountHost": fmt.Sprint(host)})
			for _, id := range tpl.resourcesOfType("AWS::Serverless::Function") {
				env := d.env(id)
				if _, ok := env["DATABRICKS_HOST"]; !ok {
					continue
				}
				s, err := dbclient.LoadSettings(context.Background(), lookupIn(env), secretStub{})
				require.NoError(t, err, "%s would not start", id)
				_, err = dbclient.WorkspaceHost(s.AccountHost, "dbc-1a2b3c4d-5e6f", s.WorkspaceHostTemplate)
				assert.NoError(t, err, "%s cannot derive workspace hosts from %s", id, host)
			}
		})
	}
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		env := d.env("ValidateFunction")
		for _, name := range []string{validate.EnvQuietWindowSeconds, validate.EnvMaxConcurrentWorkspaces, validate.EnvAllowMissingCondition} {
			assert.Contains(t, env, name, "ValidateFunction reads %s, set from a stack parameter", name)
		}
		s := wire.NewSettings(lookupIn(env))
		quiet := s.Int(validate.EnvQuietWindowSeconds, -1)
		concurrency := s.Int(validate.EnvMaxConcurrentWorkspaces, -1)
		allow := s.Bool(validate.EnvAllowMissingCondition, false)
		require.NoError(t, s.Err())
		assert.Equal(t, d.params["StorageQuietWindowSeconds"], strconv.Itoa(quiet))
		assert.Equal(t, d.params["MaxConcurrentWorkspaces"], strconv.Itoa(concurrency))
		assert.Equal(t, d.params["AllowPolicyWithoutAccountCondition"], strconv.FormatBool(allow))
	})
}

// moduleSources returns the non-test Go source of every package of this module that a function links:
// functions/<dir> and, transitively, the module packages it imports.
func moduleSources(t *testing.T, dir string) string {
	t.Helper()
	var src strings.Builder
	seen := map[string]bool{}
	var visit func(pkgDir string)
	visit = func(pkgDir string) {
		if seen[pkgDir] {
			return
		}
		seen[pkgDir] = true
		files, err := filepath.Glob(filepath.Join("..", pkgDir, "*.go"))
		require.NoError(t, err)
		require.NotEmpty(t, files, "%s has no Go files", pkgDir)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			src.Write(b)
			file, err := parser.ParseFile(token.NewFileSet(), f, b, parser.ImportsOnly)
			require.NoError(t, err)
			for _, imp := range file.Imports {
				if rel, ok := strings.CutPrefix(strings.Trim(imp.Path.Value, `"`), modulePath+"/"); ok {
					visit(rel)
				}
			}
		}
	}
	visit("functions/" + dir)
	return src.String()
}

func TestEveryEnvironmentVariableIsOneTheFunctionsCodeReads(t *testing.T) {
	tpl := loadTemplate(t)
	dirs := makefileFunctions(t)
	d := deploy(t, tpl, nil)
	for _, id := range tpl.resourcesOfType("AWS::Serverless::Function") {
		t.Run(id, func(t *testing.T) {
			dir, ok := dirs[id]
			require.True(t, ok, "the Makefile does not map %s to a directory", id)
			_, err := os.Stat(filepath.Join("..", "functions", dir, "main.go"))
			require.NoError(t, err, "functions/%s/main.go does not exist yet", dir)
			src := moduleSources(t, dir)
			for name := range d.env(id) {
				assert.Contains(t, src, strconv.Quote(name), "%s sets %s, which no code linked into functions/%s mentions", id, name, dir)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------------
// IAM
// ---------------------------------------------------------------------------------------------------

func TestNoPolicyGrantsEveryActionOfAService(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		for _, s := range d.statements() {
			if isAccountRootKeyAdmin(d, s) || !s.allows() {
				continue // a key policy's administration statement (without it, IAM cannot grant the key), or a Deny
			}
			for _, a := range s.actions() {
				assert.False(t, isServiceWildcard(a), "%s grants %q", s.owner, a)
			}
			assert.NotContains(t, s.doc, "NotAction", "%s uses NotAction", s.owner)
		}
	})
}

func TestEveryWildcardResourceSaysWhy(t *testing.T) {
	tpl := loadTemplate(t)
	found := 0
	wildcardResources(tpl.root, func(line int) {
		found++
		assert.True(t, tpl.lineHasWhy(line), "template.yaml:%d: Resource \"*\" without a comment on or above it saying why nothing narrower works", line)
	})
	assert.NotZero(t, found, "the walk found no wildcard at all: the check would not notice one")
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		for _, s := range d.statements() {
			if !slices.Contains(s.resources(), "*") || s.resource {
				continue
			}
			for _, a := range s.actions() {
				assert.True(t, strings.HasPrefix(a, "logs:"), "%s grants %s on every resource; only log delivery has no resource-level permissions", s.owner, a)
			}
		}
	})
}

func TestSecretStateMachineBusAndTableActionsAreScopedToTheirOneResource(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		_, busARN := expectedBus(d)
		reminder := fmt.Sprint(d.ref("RetirementReminderStateMachine"))
		reminderExecutions := d.arn("states", "execution:"+fmt.Sprint(d.getAtt("RetirementReminderStateMachine", "Name"))+":*")
		rotationExecutions := d.arn("states", "execution:"+fmt.Sprint(d.getAtt("RotationStateMachine", "Name"))+":*")
		workspaceRotation := fmt.Sprint(d.ref("WorkspaceRotationStateMachine"))
		workspaceExecutions := d.arn("states", "execution:"+fmt.Sprint(d.getAtt("WorkspaceRotationStateMachine", "Name"))+":*")
		syncRule := d.arn("events", "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule")
		allowed := map[string][]string{
			"secretsmanager:GetSecretValue": {d.params["DatabricksSecretArn"]},
			"states:StartExecution":         {fmt.Sprint(d.ref("RotationStateMachine")), reminder, workspaceRotation},
			// The key age check reads the rotations' outputs for since when a workspace uses its key.
			"states:ListExecutions":      {reminder, fmt.Sprint(d.ref("RotationStateMachine"))},
			"states:DescribeExecution":   {reminderExecutions, rotationExecutions, workspaceExecutions},
			"states:GetExecutionHistory": {rotationExecutions, workspaceExecutions},
			// The rotation waits for its workspace executions (startExecution.sync:2) and stops them with it.
			"states:StopExecution": {workspaceExecutions},
			"events:PutTargets":    {syncRule},
			"events:PutRule":       {syncRule},
			"events:DescribeRule":  {syncRule},
			"events:PutEvents":     {busARN},
		}
		lockTable := fmt.Sprint(d.getAtt("RotationLockTable", "Arn"))
		inventories := fmt.Sprint(d.getAtt("InventoryBucket", "Arn")) + "/inventories/*"
		for _, s := range d.statements() {
			if s.resource {
				continue
			}
			for _, a := range s.actions() {
				service, _, _ := strings.Cut(a, ":")
				switch service {
				case "secretsmanager", "states", "events":
					want, known := allowed[a]
					if assert.True(t, known, "%s grants %s, which the rotator never calls", s.owner, a) {
						for _, r := range s.resources() {
							assert.Contains(t, want, r, "%s grants %s on %s", s.owner, a, r)
						}
					}
				case "dynamodb":
					assert.Equal(t, []string{lockTable}, s.resources(), "%s grants %s beyond the lock table", s.owner, a)
				case "s3":
					// Key policy snapshots (internal/policysnap): Validate writes them, the key guard reads them.
					keyPolicies := fmt.Sprint(d.getAtt("InventoryBucket", "Arn")) + "/key-policies/*"
					if slices.Equal(s.resources(), []string{keyPolicies}) {
						snapshotUse := (s.owner == "ValidateFunction" && a == "s3:PutObject") || (s.owner == "KeyGuardFunction" && a == "s3:GetObject")
						assert.True(t, snapshotUse, "%s grants %s on the key policy snapshots", s.owner, a)
						continue
					}
					assert.Equal(t, []string{inventories}, s.resources(), "%s grants %s beyond the stored inventories", s.owner, a)
				case "kms":
					for _, r := range s.resources() {
						ownKeys := strings.HasPrefix(r, "arn:"+d.partition+":kms:") && strings.Contains(r, ":"+testAccount+":key/")
						assert.True(t, ownKeys || r == d.params["DatabricksSecretKmsKeyArn"], "%s grants %s on %s, not a key of this account", s.owner, a, r)
					}
				}
			}
		}
		assert.Equal(t, []string{fmt.Sprint(d.ref("RotationStateMachine"))}, resourcesFor(grants(d.statements(), tpl, "TriggerFunction"), "states:StartExecution"),
			"the trigger starts the rotation state machine and nothing else")
	})
}

func resourcesFor(stmts []statement, action string) []string {
	var out []string
	for _, s := range stmts {
		if hasAction(s, action) {
			out = append(out, s.resources()...)
		}
	}
	return out
}

// apiInput matches the request types of the AWS SDK clients the functions use (*kms.DescribeKeyInput in
// an interface, &kms.DescribeKeyInput{} in a call).
var apiInput = regexp.MustCompile(`[*&](kms|sfn|eventbridge|dynamodb|s3|secretsmanager)\.([A-Z][A-Za-z]+)Input\b`)

var iamPrefix = map[string]string{"kms": "kms", "sfn": "states", "eventbridge": "events", "dynamodb": "dynamodb", "s3": "s3", "secretsmanager": "secretsmanager"}

// callableActions are the IAM actions of the API operations a function's code can call. A
// transaction is authorised item by item, under the item operations' own actions.
func callableActions(src string) map[string]bool {
	out := map[string]bool{}
	for _, m := range apiInput.FindAllStringSubmatch(src, -1) {
		prefix := iamPrefix[m[1]]
		switch m[1] + "." + m[2] {
		case "dynamodb.TransactWriteItems":
			for _, op := range []string{"PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"} {
				out["dynamodb:"+op] = true
			}
		case "dynamodb.TransactGetItems":
			out["dynamodb:GetItem"] = true
		default:
			out[prefix+":"+m[2]] = true
		}
	}
	return out
}

func TestNoFunctionMayCallAnAPIItsCodeNeverCalls(t *testing.T) {
	tpl := loadTemplate(t)
	dirs := makefileFunctions(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		all := d.statements()
		for _, id := range tpl.resourcesOfType("AWS::Serverless::Function") {
			dir, ok := dirs[id]
			if !ok {
				t.Errorf("the Makefile does not map %s to a directory", id)
				continue
			}
			if _, err := os.Stat(filepath.Join("..", "functions", dir, "main.go")); err != nil {
				t.Errorf("functions/%s/main.go does not exist yet", dir)
				continue
			}
			callable := callableActions(moduleSources(t, dir))
			for _, s := range grants(all, tpl, id) {
				for _, a := range s.actions() {
					service, _, _ := strings.Cut(a, ":")
					if !slices.Contains([]string{"kms", "states", "events", "dynamodb", "s3", "secretsmanager"}, service) {
						continue
					}
					if a == "kms:Decrypt" && slices.Contains(s.resources(), d.params["DatabricksSecretKmsKeyArn"]) {
						continue // Secrets Manager decrypts the secret with the caller's permission
					}
					assert.True(t, callable[a], "%s may call %s, which no code linked into functions/%s calls", id, a, dir)
				}
			}
		}
	})
}

// kmsCallsThatStartOrGuard are the KMS calls whose CloudTrail events the rotator reacts to. None of its
// own roles may make them, so the rotator cannot trigger itself (which is also why the event patterns
// need no anything-but on the caller).
var kmsCallsThatStartOrGuard = []string{"kms:CreateKey", "kms:TagResource", "kms:CreateAlias", "kms:UpdateAlias",
	"kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:DisableKey"}

func TestNoFunctionMayMakeTheKmsCallsThatStartARotationOrThatTheKeyGuardWatches(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		all := d.statements()
		for _, typ := range []string{"AWS::Serverless::Function", "AWS::Serverless::StateMachine"} {
			for _, id := range tpl.resourcesOfType(typ) {
				for _, s := range grants(all, tpl, id) {
					for _, a := range s.actions() {
						for _, forbidden := range kmsCallsThatStartOrGuard {
							assert.False(t, iamResourceMatches(strings.ToLower(a), strings.ToLower(forbidden)), "%s may call %s (granted as %s)", id, forbidden, a)
						}
					}
				}
			}
		}
	})
}

func TestTheKeyGuardMayUndoKeyChangesOnlyWhenAskedTo(t *testing.T) {
	tpl := loadTemplate(t)
	for _, undo := range []string{"false", "true"} {
		t.Run("UndoKeyChanges="+undo, func(t *testing.T) {
			d := deploy(t, tpl, map[string]string{"UndoKeyChanges": undo})
			guard := grants(d.statements(), tpl, "KeyGuardFunction")
			for _, action := range []string{"kms:CancelKeyDeletion", "kms:EnableKey"} {
				granted := slices.ContainsFunc(guard, func(s statement) bool { return hasAction(s, action) })
				assert.Equal(t, undo == "true", granted, "KeyGuardFunction %s", action)
			}
			assert.Equal(t, undo, d.env("KeyGuardFunction")["UNDO_KEY_CHANGES"])
			for _, fn := range tpl.resourcesOfType("AWS::Serverless::Function") {
				if fn == "KeyGuardFunction" {
					continue
				}
				for _, s := range grants(d.statements(), tpl, fn) {
					assert.False(t, hasAction(s, "kms:CancelKeyDeletion") || hasAction(s, "kms:EnableKey"), "%s may change key state", fn)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------------
// Rules, queues, alarms
// ---------------------------------------------------------------------------------------------------

// eventRule is one EventBridge rule of the stack: a SAM EventBridgeRule event or an AWS::Events::Rule.
type eventRule struct {
	id         string // <Function>.<Event> or the rule's logical id
	logicalID  string // the AWS::Events::Rule logical id (SAM: <Function><Event>)
	bus        any    // unresolved EventBusName; nil is the default bus
	pattern    any
	retry      any
	deadLetter any
	// fromAWS: the rule matches an AWS service's events (source aws.*: CloudTrail's KMS calls, Step
	// Functions status changes), which reach the default bus only.
	fromAWS bool
}

func eventRules(tpl *cfnTemplate) []eventRule {
	var out []eventRule
	for _, fn := range tpl.resourcesOfType("AWS::Serverless::Function") {
		for ev, p := range tpl.eventRules(fn) {
			dl, _ := p["DeadLetterConfig"].(map[string]any)
			out = append(out, eventRule{id: fn + "." + ev, logicalID: fn + ev, bus: p["EventBusName"], pattern: p["Pattern"],
				retry: p["RetryPolicy"], deadLetter: dl["Arn"]})
		}
	}
	for _, id := range tpl.resourcesOfType("AWS::Events::Rule") {
		p := tpl.properties(id)
		targets, _ := p["Targets"].([]any)
		for _, tg := range targets {
			target, _ := tg.(map[string]any)
			dl, _ := target["DeadLetterConfig"].(map[string]any)
			out = append(out, eventRule{id: id, logicalID: id, bus: p["EventBusName"], pattern: p["EventPattern"],
				retry: target["RetryPolicy"], deadLetter: dl["Arn"]})
		}
	}
	for i := range out {
		src, _ := out[i].pattern.(map[string]any)["source"].([]any)
		out[i].fromAWS = slices.ContainsFunc(src, func(v any) bool { return strings.HasPrefix(fmt.Sprint(v), "aws.") })
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func TestEveryEventRuleRetriesAndDeadLettersIntoAnEncryptedQueueThatAcceptsIt(t *testing.T) {
	tpl := loadTemplate(t)
	rules := eventRules(tpl)
	require.NotEmpty(t, rules)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		for _, r := range rules {
			retry, _ := d.resolve(r.retry).(map[string]any)
			assert.Contains(t, retry, "MaximumRetryAttempts", "%s RetryPolicy", r.id)
			assert.Contains(t, retry, "MaximumEventAgeInSeconds", "%s RetryPolicy", r.id)

			ga, _ := r.deadLetter.(map[string]any)["Fn::GetAtt"].([]any)
			if !assert.Len(t, ga, 2, "%s DeadLetterConfig.Arn must be !GetAtt <queue>.Arn", r.id) {
				continue
			}
			queue := fmt.Sprint(ga[0])
			assert.Equal(t, "AWS::SQS::Queue", tpl.resourceType(queue), "%s dead-letters into %s", r.id, queue)
			assert.Equal(t, true, tpl.properties(queue)["SqsManagedSseEnabled"], "%s is not encrypted (SqsManagedSseEnabled)", queue)

			ruleARN := fmt.Sprint(d.getAtt(r.logicalID, "Arn"))
			queueARN := fmt.Sprint(d.getAtt(queue, "Arn"))
			accepted := slices.ContainsFunc(d.statements(), func(s statement) bool {
				principal, _ := s.doc["Principal"].(map[string]any)
				cond, _ := s.doc["Condition"].(map[string]any)
				arnEquals, _ := cond["ArnEquals"].(map[string]any)
				return s.resource && fmt.Sprint(principal["Service"]) == "events.amazonaws.com" && hasAction(s, "sqs:SendMessage") &&
					slices.Contains(s.resources(), queueARN) && slices.Contains(asStrings(arnEquals["aws:SourceArn"]), ruleARN)
			})
			assert.True(t, accepted, "no queue policy lets rule %s (%s) send to %s: dead letters would be lost", r.id, r.logicalID, queue)
		}
	})
}

func TestKMSRulesListenOnTheDefaultBusAndTheRotatorsRulesOnItsOwn(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		bus, _ := expectedBus(d)
		for _, r := range eventRules(tpl) {
			got := "default"
			if r.bus != nil {
				got = fmt.Sprint(d.resolve(r.bus))
			}
			if r.fromAWS {
				assert.Equal(t, "default", got, "%s: AWS services (CloudTrail's KMS API calls, Step Functions status changes) deliver to the default bus only", r.id)
			} else {
				assert.Equal(t, bus, got, "%s listens for the rotator's events on another bus than the one it publishes to", r.id)
			}
		}
	})
}

func TestEveryQueueAndEveryRotationFailureRaisesAnAlarmOnTheTopic(t *testing.T) {
	tpl := loadTemplate(t)
	topics := tpl.resourcesOfType("AWS::SNS::Topic")
	require.Len(t, topics, 1, "one alarm topic")
	d := deploy(t, tpl, nil)
	type alarm struct{ namespace, metric, dimension, value string }
	var alarms []alarm
	for _, id := range tpl.resourcesOfType("AWS::CloudWatch::Alarm") {
		p, _ := d.resolve(tpl.properties(id)).(map[string]any)
		assert.Contains(t, asStrings(p["AlarmActions"]), fmt.Sprint(d.ref(topics[0])), "%s does not notify the topic", id)
		dims, _ := p["Dimensions"].([]any)
		require.Len(t, dims, 1, "%s", id)
		dim, _ := dims[0].(map[string]any)
		alarms = append(alarms, alarm{fmt.Sprint(p["Namespace"]), fmt.Sprint(p["MetricName"]), fmt.Sprint(dim["Name"]), fmt.Sprint(dim["Value"])})
	}
	var want []alarm
	for _, q := range tpl.resourcesOfType("AWS::SQS::Queue") {
		want = append(want, alarm{"AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", fmt.Sprint(d.getAtt(q, "QueueName"))})
	}
	for _, metric := range []string{"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"} {
		want = append(want, alarm{"AWS/States", metric, "StateMachineArn", fmt.Sprint(d.ref("RotationStateMachine"))})
	}
	// A workspace's child execution that times out or is stopped may leave its compute down.
	for _, metric := range []string{"ExecutionsTimedOut", "ExecutionsAborted"} {
		want = append(want, alarm{"AWS/States", metric, "StateMachineArn", fmt.Sprint(d.ref("WorkspaceRotationStateMachine"))})
	}
	want = append(want, alarm{"AWS/Lambda", "Errors", "FunctionName", fmt.Sprint(d.ref("TriggerFunction"))})
	for _, w := range want {
		assert.Contains(t, alarms, w, "no alarm on %s %s for %s", w.namespace, w.metric, w.value)
	}

	for _, id := range tpl.resourcesOfType("AWS::SNS::Subscription") {
		assert.Equal(t, "HasAlertEmail", tpl.resource(id)["Condition"], "%s must exist only when AlertEmail is set", id)
	}
	assert.False(t, deploy(t, tpl, map[string]string{"AlertEmail": ""}).condition("HasAlertEmail"))
	assert.True(t, deploy(t, tpl, map[string]string{"AlertEmail": "oncall@example.com"}).condition("HasAlertEmail"))
}

// ---------------------------------------------------------------------------------------------------
// Whole template
// ---------------------------------------------------------------------------------------------------

func TestEveryRefAndGetAttNamesSomethingThatExistsInThatDeployment(t *testing.T) {
	tpl := loadTemplate(t)
	eachDeployment(t, tpl, func(t *testing.T, d *deployment) {
		d.resolve(tpl.section("Globals"))
		for id, r := range tpl.section("Resources") {
			if d.exists(id) {
				d.resolve(r)
			}
		}
		for id, o := range tpl.section("Outputs") {
			out, _ := o.(map[string]any)
			if cond, ok := out["Condition"].(string); ok && !d.condition(cond) {
				continue
			}
			assert.NotEmpty(t, d.resolve(out["Value"]), "output %s", id)
		}
		for name := range tpl.section("Conditions") {
			d.condition(name)
		}
	})
}

func TestOutputsNameTheDatabricksPrincipalOfThePartition(t *testing.T) {
	tpl := loadTemplate(t)
	cases := []struct {
		partition, host, want string
	}{
		{"aws", "https://accounts.cloud.databricks.com", "arn:aws:iam::414351767826:root"},
		{"aws-us-gov", "https://accounts.cloud.databricks.us", "arn:aws-us-gov:iam::044793339203:root"},
		{"aws-us-gov", "https://accounts-dod.cloud.databricks.mil", "arn:aws-us-gov:iam::170661010020:root"},
	}
	for _, c := range cases {
		t.Run(c.host, func(t *testing.T) {
			d := deploy(t, tpl, map[string]string{"AWS::Partition": c.partition, "DatabricksAccountHost": c.host})
			outputs := tpl.section("Outputs")
			principal, _ := outputs["DatabricksControlPlanePrincipal"].(map[string]any)
			assert.Equal(t, c.want, d.resolve(principal["Value"]))
			statement, _ := outputs["ManagedServicesKeyPolicyStatement"].(map[string]any)
			var doc map[string]any
			require.NoError(t, json.Unmarshal([]byte(fmt.Sprint(d.resolve(statement["Value"]))), &doc), "the key policy statement output is not JSON")
			assert.Equal(t, map[string]any{"AWS": c.want}, doc["Principal"])
			assert.Contains(t, fmt.Sprint(doc["Condition"]), d.params["DatabricksAccountId"])
		})
	}
}

func TestSamconfigOverridesOnlyTemplateParametersAndGivesEveryRequiredOne(t *testing.T) {
	tpl := loadTemplate(t)
	raw, err := os.ReadFile("../samconfig.toml")
	require.NoError(t, err)
	required := []string{}
	for name, p := range tpl.section("Parameters") {
		if _, hasDefault := p.(map[string]any)["Default"]; !hasDefault {
			required = append(required, name)
		}
	}
	sections := regexp.MustCompile(`(?m)^\[([a-z]+)\.(deploy|sync)\.parameters\]$`).FindAllSubmatchIndex(raw, -1)
	require.NotEmpty(t, sections)
	seenDeploy := map[string]bool{}
	for i, s := range sections {
		end := len(raw)
		if i+1 < len(sections) {
			end = sections[i+1][0]
		}
		body := string(raw[s[1]:end])
		if next := regexp.MustCompile(`(?m)^\[`).FindStringIndex(body); next != nil {
			body = body[:next[0]]
		}
		env, command := string(raw[s[2]:s[3]]), string(raw[s[4]:s[5]])
		given := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s*"([A-Za-z0-9]+)=`).FindAllStringSubmatch(body, -1) {
			given[m[1]] = true
			assert.Contains(t, tpl.section("Parameters"), m[1], "[%s.%s] overrides %s, which template.yaml does not declare", env, command, m[1])
		}
		for _, name := range required {
			assert.True(t, given[name], "[%s.%s] does not give %s, which has no default", env, command, name)
		}
		if command == "deploy" {
			seenDeploy[env] = true
			assert.Contains(t, body, `capabilities = "CAPABILITY_IAM"`, "[%s.deploy]", env)
			assert.Contains(t, body, "resolve_s3 = true", "[%s.deploy]", env)
		}
	}
	assert.True(t, seenDeploy["default"] && seenDeploy["prod"], "samconfig.toml needs [default.deploy.parameters] and [prod.deploy.parameters]")
}
