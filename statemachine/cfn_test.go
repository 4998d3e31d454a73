package statemachine

// Reading template.yaml the way CloudFormation does, without AWS: yaml.v3 nodes (short-form tags kept,
// line numbers kept for the comment checks), converted to the long form (!Ref X -> {"Ref": "X"},
// !GetAtt A.B -> {"Fn::GetAtt": ["A", "B"]}, ...), and a resolver that evaluates intrinsics for one
// imagined deployment (parameters, conditions, mappings, and made-up but well-formed physical ids and
// ARNs for resources, including the ones SAM generates: <Function>Role and <Function><Event> rules).

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const templatePath = "../template.yaml"

// cfnTemplate is template.yaml in long form, plus its nodes and raw lines.
type cfnTemplate struct {
	root  *yaml.Node
	lines []string
	doc   map[string]any
}

var shortFormTags = map[string]string{
	"!Ref": "Ref", "!Condition": "Condition",
	"!GetAtt": "Fn::GetAtt", "!Sub": "Fn::Sub", "!If": "Fn::If", "!Equals": "Fn::Equals", "!Not": "Fn::Not",
	"!And": "Fn::And", "!Or": "Fn::Or", "!Join": "Fn::Join", "!Select": "Fn::Select", "!Split": "Fn::Split",
	"!FindInMap": "Fn::FindInMap", "!Base64": "Fn::Base64", "!GetAZs": "Fn::GetAZs", "!ImportValue": "Fn::ImportValue",
	"!Cidr": "Fn::Cidr",
}

func loadTemplate(t *testing.T) *cfnTemplate {
	t.Helper()
	raw, err := os.ReadFile(templatePath)
	require.NoError(t, err)
	var root yaml.Node
	require.NoError(t, yaml.Unmarshal(raw, &root), "template.yaml is not YAML")
	doc, ok := longForm(t, &root).(map[string]any)
	require.True(t, ok, "template.yaml is not a mapping")
	return &cfnTemplate{root: &root, lines: strings.Split(string(raw), "\n"), doc: doc}
}

// longForm converts a node to plain Go values with intrinsic functions in their long form.
func longForm(t *testing.T, n *yaml.Node) any {
	t.Helper()
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		return longForm(t, n.Content[0])
	case yaml.AliasNode:
		return longForm(t, n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			key := n.Content[i]
			require.NotContains(t, m, key.Value, "line %d: duplicate key %s (CloudFormation rejects the template)", key.Line, key.Value)
			m[key.Value] = longForm(t, n.Content[i+1])
		}
		v = m
	case yaml.SequenceNode:
		s := []any{}
		for _, c := range n.Content {
			s = append(s, longForm(t, c))
		}
		v = s
	case yaml.ScalarNode:
		if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
			v = n.Value
		} else {
			require.NoError(t, n.Decode(&v), "line %d", n.Line)
		}
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v
	}
	name, ok := shortFormTags[n.Tag]
	require.True(t, ok, "line %d: unknown tag %s", n.Line, n.Tag)
	if name == "Fn::GetAtt" {
		if s, isString := v.(string); isString {
			resource, attr, found := strings.Cut(s, ".")
			require.True(t, found, "line %d: !GetAtt %s has no attribute", n.Line, s)
			v = []any{resource, attr}
		}
	}
	return map[string]any{name: v}
}

func (tpl *cfnTemplate) section(name string) map[string]any {
	m, _ := tpl.doc[name].(map[string]any)
	return m
}

func (tpl *cfnTemplate) resource(id string) map[string]any {
	r, _ := tpl.section("Resources")[id].(map[string]any)
	return r
}

func (tpl *cfnTemplate) resourceType(id string) string {
	s, _ := tpl.resource(id)["Type"].(string)
	return s
}

// resourcesOfType returns the logical ids of every resource of the type, sorted.
func (tpl *cfnTemplate) resourcesOfType(typ string) []string {
	var ids []string
	for id := range tpl.section("Resources") {
		if tpl.resourceType(id) == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (tpl *cfnTemplate) properties(id string) map[string]any {
	p, _ := tpl.resource(id)["Properties"].(map[string]any)
	if p == nil {
		p = map[string]any{}
	}
	return p
}

// functionProperties merges Globals.Function into a function's properties the way SAM does: maps
// merge recursively, lists concatenate, the function's own scalar wins.
func (tpl *cfnTemplate) functionProperties(id string) map[string]any {
	globals, _ := tpl.section("Globals")["Function"].(map[string]any)
	merged, _ := mergeGlobals(globals, tpl.properties(id)).(map[string]any)
	return merged
}

func mergeGlobals(global, local any) any {
	gm, gok := global.(map[string]any)
	lm, lok := local.(map[string]any)
	if gok && lok && !isIntrinsic(gm) && !isIntrinsic(lm) {
		out := maps.Clone(gm)
		for k, v := range lm {
			if g, ok := out[k]; ok {
				out[k] = mergeGlobals(g, v)
			} else {
				out[k] = v
			}
		}
		return out
	}
	gl, gok := global.([]any)
	ll, lok := local.([]any)
	if gok && lok {
		return append(slices.Clone(gl), ll...)
	}
	if local == nil {
		return global
	}
	return local
}

func isIntrinsic(m map[string]any) bool {
	if len(m) != 1 {
		return false
	}
	for k := range m {
		return k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::")
	}
	return false
}

// eventRules are the EventBridgeRule events of a function, by event logical id.
func (tpl *cfnTemplate) eventRules(function string) map[string]map[string]any {
	out := map[string]map[string]any{}
	events, _ := tpl.properties(function)["Events"].(map[string]any)
	for id, e := range events {
		ev, _ := e.(map[string]any)
		if ev["Type"] == "EventBridgeRule" {
			props, _ := ev["Properties"].(map[string]any)
			out[id] = props
		}
	}
	return out
}

// generatedType is the type of a resource SAM generates and the template may reference:
// <Function>Role / <StateMachine>Role and <Function><EventId> for EventBridgeRule events.
func (tpl *cfnTemplate) generatedType(id string) string {
	if base, ok := strings.CutSuffix(id, "Role"); ok {
		switch tpl.resourceType(base) {
		case "AWS::Serverless::Function", "AWS::Serverless::StateMachine":
			if _, hasRole := tpl.properties(base)["Role"]; !hasRole {
				return "AWS::IAM::Role"
			}
		}
	}
	for _, fn := range tpl.resourcesOfType("AWS::Serverless::Function") {
		if event, ok := strings.CutPrefix(id, fn); ok {
			if _, isRule := tpl.eventRules(fn)[event]; isRule {
				return "AWS::Events::Rule"
			}
		}
	}
	return ""
}

// lineHasWhy reports whether the 1-based line carries a # comment, or the line above is a comment.
func (tpl *cfnTemplate) lineHasWhy(line int) bool {
	if line < 1 || line > len(tpl.lines) {
		return false
	}
	if strings.Contains(tpl.lines[line-1], " #") {
		return true
	}
	return line >= 2 && strings.HasPrefix(strings.TrimSpace(tpl.lines[line-2]), "#")
}

// ---------------------------------------------------------------------------------------------------
// Resolving intrinsics for one deployment
// ---------------------------------------------------------------------------------------------------

const (
	testAccount   = "111122223333"
	testRegion    = "us-west-2"
	testStackName = "databricks-cmk-rotator"
)

// requiredParameterValues are plausible values for the parameters without a default.
var requiredParameterValues = map[string]string{
	"DatabricksAccountId": "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
	"DatabricksSecretArn": "arn:aws:secretsmanager:us-west-2:111122223333:secret:databricks-cmk-rotator/oauth-AbCdEf",
}

// noValue is AWS::NoValue: the element or key holding it disappears.
type noValue struct{}

type deployment struct {
	t         *testing.T
	tpl       *cfnTemplate
	partition string
	params    map[string]string
}

// deploy returns a deployment with the parameters' defaults, requiredParameterValues and overrides.
func deploy(t *testing.T, tpl *cfnTemplate, overrides map[string]string) *deployment {
	t.Helper()
	d := &deployment{t: t, tpl: tpl, partition: "aws", params: map[string]string{}}
	for name, p := range tpl.section("Parameters") {
		if def, ok := p.(map[string]any)["Default"]; ok {
			d.params[name] = fmt.Sprint(def)
		} else if v, ok := requiredParameterValues[name]; ok {
			d.params[name] = v
		}
	}
	for k, v := range overrides {
		if k == "AWS::Partition" {
			d.partition = v
			continue
		}
		require.Contains(t, tpl.section("Parameters"), k, "override of an unknown parameter")
		d.params[k] = v
	}
	for name := range tpl.section("Parameters") {
		require.Contains(t, d.params, name, "parameter %s has no default and no test value", name)
	}
	return d
}

func (d *deployment) errorf(format string, args ...any) {
	d.t.Helper()
	d.t.Errorf(format, args...)
}

// exists reports whether a resource is created in this deployment (its Condition holds).
func (d *deployment) exists(id string) bool {
	r := d.tpl.resource(id)
	if r == nil {
		return d.tpl.generatedType(id) != ""
	}
	if cond, ok := r["Condition"].(string); ok {
		return d.condition(cond)
	}
	return true
}

func (d *deployment) condition(name string) bool {
	expr, ok := d.tpl.section("Conditions")[name]
	if !ok {
		d.errorf("condition %s is not defined", name)
		return false
	}
	return d.evalCondition(expr)
}

func (d *deployment) evalCondition(expr any) bool {
	m, _ := expr.(map[string]any)
	switch {
	case m["Fn::Equals"] != nil:
		args, _ := m["Fn::Equals"].([]any)
		if len(args) != 2 {
			d.errorf("Fn::Equals needs two arguments: %v", args)
			return false
		}
		return fmt.Sprint(d.resolve(args[0])) == fmt.Sprint(d.resolve(args[1]))
	case m["Fn::Not"] != nil:
		args, _ := m["Fn::Not"].([]any)
		return len(args) == 1 && !d.evalCondition(args[0])
	case m["Fn::And"] != nil:
		args, _ := m["Fn::And"].([]any)
		for _, a := range args {
			if !d.evalCondition(a) {
				return false
			}
		}
		return true
	case m["Fn::Or"] != nil:
		args, _ := m["Fn::Or"].([]any)
		for _, a := range args {
			if d.evalCondition(a) {
				return true
			}
		}
		return false
	case m["Condition"] != nil:
		return d.condition(fmt.Sprint(m["Condition"]))
	}
	d.errorf("cannot evaluate condition %v", expr)
	return false
}

func (d *deployment) physicalID(id string) string { return testStackName + "-" + id + "-1A2B3C4D5E6F" }

func (d *deployment) arn(service, resource string) string {
	return "arn:" + d.partition + ":" + service + ":" + testRegion + ":" + testAccount + ":" + resource
}

// ref is what Ref returns.
func (d *deployment) ref(name string) any {
	switch name {
	case "AWS::Partition":
		return d.partition
	case "AWS::Region":
		return testRegion
	case "AWS::AccountId":
		return testAccount
	case "AWS::StackName":
		return testStackName
	case "AWS::URLSuffix":
		return "amazonaws.com"
	case "AWS::NoValue":
		return noValue{}
	}
	if v, ok := d.params[name]; ok {
		return v
	}
	if !d.exists(name) {
		d.errorf("Ref %s: no such parameter or resource in this deployment", name)
		return "<missing " + name + ">"
	}
	switch typ := d.typeOf(name); typ {
	case "AWS::Serverless::StateMachine":
		return d.arn("states", "stateMachine:"+d.physicalID(name))
	case "AWS::Events::EventBus":
		return fmt.Sprint(d.resolve(d.tpl.properties(name)["Name"]))
	case "AWS::Logs::LogGroup":
		return fmt.Sprint(d.resolve(d.tpl.properties(name)["LogGroupName"]))
	case "AWS::SQS::Queue":
		return "https://sqs." + testRegion + ".amazonaws.com/" + testAccount + "/" + d.physicalID(name)
	case "AWS::SNS::Topic":
		return d.arn("sns", d.physicalID(name))
	case "AWS::KMS::Key":
		return "5e6f7a8b-0000-4000-8000-" + fmt.Sprintf("%012d", len(name))
	case "AWS::IAM::ManagedPolicy":
		return "arn:" + d.partition + ":iam::" + testAccount + ":policy/" + d.physicalID(name)
	case "AWS::S3::Bucket":
		return strings.ToLower(d.physicalID(name))
	default:
		return d.physicalID(name)
	}
}

func (d *deployment) typeOf(id string) string {
	if typ := d.tpl.resourceType(id); typ != "" {
		return typ
	}
	return d.tpl.generatedType(id)
}

// getAtt is what Fn::GetAtt returns.
func (d *deployment) getAtt(id, attr string) any {
	if !d.exists(id) {
		d.errorf("GetAtt %s.%s: no such resource in this deployment", id, attr)
		return "<missing " + id + ">"
	}
	typ := d.typeOf(id)
	key := typ + "." + attr
	switch key {
	case "AWS::Serverless::Function.Arn":
		return d.arn("lambda", "function:"+d.physicalID(id))
	case "AWS::Serverless::StateMachine.Arn":
		return d.ref(id)
	case "AWS::Serverless::StateMachine.Name":
		return d.physicalID(id)
	case "AWS::IAM::Role.Arn":
		return "arn:" + d.partition + ":iam::" + testAccount + ":role/" + d.physicalID(id)
	case "AWS::Events::EventBus.Arn":
		return d.arn("events", "event-bus/"+fmt.Sprint(d.ref(id)))
	case "AWS::Events::EventBus.Name":
		return d.ref(id)
	case "AWS::Events::Rule.Arn":
		return d.arn("events", "rule/"+d.physicalID(id))
	case "AWS::DynamoDB::Table.Arn":
		return d.arn("dynamodb", "table/"+d.physicalID(id))
	case "AWS::SQS::Queue.Arn":
		return d.arn("sqs", d.physicalID(id))
	case "AWS::SQS::Queue.QueueName":
		return d.physicalID(id)
	case "AWS::Logs::LogGroup.Arn":
		return d.arn("logs", "log-group:"+fmt.Sprint(d.ref(id))+":*")
	case "AWS::SNS::Topic.TopicArn":
		return d.ref(id)
	case "AWS::S3::Bucket.Arn":
		return "arn:" + d.partition + ":s3:::" + fmt.Sprint(d.ref(id))
	case "AWS::KMS::Key.Arn":
		return d.arn("kms", "key/"+fmt.Sprint(d.ref(id)))
	}
	d.errorf("GetAtt %s.%s: attribute unknown to this test for %s", id, attr, typ)
	return "<unknown " + key + ">"
}

var subVariable = regexp.MustCompile(`\$\{([^}]*)\}`)

// resolve evaluates every intrinsic in v for this deployment.
func (d *deployment) resolve(v any) any {
	switch x := v.(type) {
	case []any:
		out := []any{}
		for _, e := range x {
			if r := d.resolve(e); r != (noValue{}) {
				out = append(out, r)
			}
		}
		return out
	case map[string]any:
		if isIntrinsic(x) {
			return d.intrinsic(x)
		}
		out := map[string]any{}
		for k, e := range x {
			if r := d.resolve(e); r != (noValue{}) {
				out[k] = r
			}
		}
		return out
	}
	return v
}

func (d *deployment) intrinsic(m map[string]any) any {
	for fn, arg := range m {
		switch fn {
		case "Ref":
			return d.ref(fmt.Sprint(arg))
		case "Fn::GetAtt":
			parts, _ := arg.([]any)
			if len(parts) != 2 {
				d.errorf("Fn::GetAtt %v needs [resource, attribute]", arg)
				return ""
			}
			return d.getAtt(fmt.Sprint(parts[0]), fmt.Sprint(d.resolve(parts[1])))
		case "Fn::Sub":
			return d.sub(arg)
		case "Fn::If":
			args, _ := arg.([]any)
			if len(args) != 3 {
				d.errorf("Fn::If %v needs [condition, then, else]", arg)
				return ""
			}
			if d.condition(fmt.Sprint(args[0])) {
				return d.resolve(args[1])
			}
			return d.resolve(args[2])
		case "Fn::Join":
			args, _ := arg.([]any)
			if len(args) != 2 {
				d.errorf("Fn::Join %v needs [separator, list]", arg)
				return ""
			}
			var parts []string
			for _, p := range d.resolve(args[1]).([]any) {
				parts = append(parts, fmt.Sprint(p))
			}
			return strings.Join(parts, fmt.Sprint(args[0]))
		case "Fn::FindInMap":
			args, _ := d.resolve(arg).([]any)
			if len(args) != 3 {
				d.errorf("Fn::FindInMap %v needs [map, key, key]", arg)
				return ""
			}
			mapping, _ := d.tpl.section("Mappings")[fmt.Sprint(args[0])].(map[string]any)
			top, _ := mapping[fmt.Sprint(args[1])].(map[string]any)
			value, ok := top[fmt.Sprint(args[2])]
			if !ok {
				d.errorf("Fn::FindInMap %v: no such entry", args)
			}
			return fmt.Sprint(value)
		case "Condition":
			return d.condition(fmt.Sprint(arg))
		}
		d.errorf("intrinsic %s is not understood by this test", fn)
	}
	return ""
}

func (d *deployment) sub(arg any) any {
	text, vars := "", map[string]any{}
	switch a := arg.(type) {
	case string:
		text = a
	case []any:
		if len(a) != 2 {
			d.errorf("Fn::Sub %v needs [string, variables]", arg)
			return ""
		}
		text = fmt.Sprint(a[0])
		m, _ := a[1].(map[string]any)
		for k, v := range m {
			vars[k] = d.resolve(v)
		}
	}
	return subVariable.ReplaceAllStringFunc(text, func(match string) string {
		name := match[2 : len(match)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		if v, ok := vars[name]; ok {
			return fmt.Sprint(v)
		}
		if resource, attr, ok := strings.Cut(name, "."); ok {
			return fmt.Sprint(d.getAtt(resource, attr))
		}
		return fmt.Sprint(d.ref(name))
	})
}

// env is a function's resolved Environment.Variables (Globals merged).
func (d *deployment) env(function string) map[string]string {
	props := d.tpl.functionProperties(function)
	envBlock, _ := d.resolve(props["Environment"]).(map[string]any)
	vars, _ := envBlock["Variables"].(map[string]any)
	out := map[string]string{}
	for k, v := range vars {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// asStrings turns a resolved string-or-list into a list.
func asStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case nil:
		return nil
	}
	return []string{fmt.Sprint(v)}
}
