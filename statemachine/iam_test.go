package statemachine

// The IAM statements of template.yaml, gathered from every place SAM and CloudFormation take them:
// function and state machine Policies (inline statements, SAM policy templates expanded the way
// samtranslator's policy_templates.json does, managed policies of the stack), and the resource policies
// of queues, topics and keys.

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// statement is one resolved IAM statement and where it comes from.
type statement struct {
	owner    string // logical id of the function, state machine or policy resource
	resource bool   // a resource policy (queue, topic, key) rather than an identity policy
	doc      map[string]any
}

func (s statement) actions() []string   { return asStrings(s.doc["Action"]) }
func (s statement) allows() bool        { return s.doc["Effect"] == "Allow" }
func (s statement) resources() []string { return asStrings(s.doc["Resource"]) }

// samPolicyTemplates expands the SAM policy templates the template uses (samtranslator
// policy_templates.json); an unknown one fails the test that meets it.
var samPolicyTemplates = map[string]func(d *deployment, params map[string]any) map[string]any{
	"LambdaInvokePolicy": func(d *deployment, p map[string]any) map[string]any {
		return map[string]any{"Effect": "Allow", "Action": []any{"lambda:InvokeFunction"},
			"Resource": d.arn("lambda", "function:"+fmt.Sprint(p["FunctionName"])+"*")}
	},
	"EventBridgePutEventsPolicy": func(d *deployment, p map[string]any) map[string]any {
		return map[string]any{"Effect": "Allow", "Action": "events:PutEvents",
			"Resource": d.arn("events", "event-bus/"+fmt.Sprint(p["EventBusName"]))}
	},
	"StepFunctionsExecutionPolicy": func(d *deployment, p map[string]any) map[string]any {
		return map[string]any{"Effect": "Allow", "Action": []any{"states:StartExecution"},
			"Resource": d.arn("states", "stateMachine:"+fmt.Sprint(p["StateMachineName"]))}
	},
}

// statements resolves every IAM statement of the deployment.
func (d *deployment) statements() []statement {
	var out []statement
	add := func(owner string, resourcePolicy bool, stmts any) {
		list, _ := d.resolve(stmts).([]any)
		if m, ok := d.resolve(stmts).(map[string]any); ok {
			list = []any{m}
		}
		for _, s := range list {
			if m, ok := s.(map[string]any); ok {
				out = append(out, statement{owner: owner, resource: resourcePolicy, doc: m})
			}
		}
	}
	for _, typ := range []string{"AWS::Serverless::Function", "AWS::Serverless::StateMachine"} {
		for _, id := range d.tpl.resourcesOfType(typ) {
			policies, _ := d.tpl.properties(id)["Policies"].([]any)
			for _, p := range policies {
				m, ok := p.(map[string]any)
				switch {
				case ok && m["Statement"] != nil:
					add(id, false, m["Statement"])
				case ok && isIntrinsic(m):
					// A managed policy of this stack, attached by Ref: its statements are counted once, under
					// the policy's own id, below.
				case ok && len(m) == 1:
					for name, params := range m {
						expand, known := samPolicyTemplates[name]
						if !known {
							d.errorf("%s uses SAM policy template %s, which this test cannot expand; add it to samPolicyTemplates", id, name)
							continue
						}
						resolved, _ := d.resolve(params).(map[string]any)
						out = append(out, statement{owner: id, doc: expand(d, resolved)})
					}
				default:
					d.errorf("%s: policy %v is neither a statement list, a policy template nor a managed policy of this stack", id, p)
				}
			}
		}
	}
	for _, id := range d.tpl.resourcesOfType("AWS::IAM::ManagedPolicy") {
		doc, _ := d.tpl.properties(id)["PolicyDocument"].(map[string]any)
		add(id, false, doc["Statement"])
	}
	for _, typ := range []string{"AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::S3::BucketPolicy"} {
		for _, id := range d.tpl.resourcesOfType(typ) {
			doc, _ := d.tpl.properties(id)["PolicyDocument"].(map[string]any)
			add(id, true, doc["Statement"])
		}
	}
	for _, id := range d.tpl.resourcesOfType("AWS::KMS::Key") {
		doc, _ := d.tpl.properties(id)["KeyPolicy"].(map[string]any)
		add(id, true, doc["Statement"])
	}
	return out
}

// managedPoliciesOf lists the stack's managed policies a function or state machine attaches by Ref.
func (tpl *cfnTemplate) managedPoliciesOf(id string) []string {
	var out []string
	policies, _ := tpl.properties(id)["Policies"].([]any)
	for _, p := range policies {
		if m, ok := p.(map[string]any); ok {
			if ref, isRef := m["Ref"].(string); isRef && tpl.resourceType(ref) == "AWS::IAM::ManagedPolicy" {
				out = append(out, ref)
			}
		}
	}
	return out
}

// grants lists the statements that apply to a function or state machine: its own and those of the
// stack's managed policies it attaches.
func grants(all []statement, tpl *cfnTemplate, id string) []statement {
	owners := map[string]bool{id: true}
	for _, p := range tpl.managedPoliciesOf(id) {
		owners[p] = true
	}
	var out []statement
	for _, s := range all {
		if owners[s.owner] && !s.resource {
			out = append(out, s)
		}
	}
	return out
}

// wildcardResources finds every `Resource: "*"` (alone or in a list) in the YAML, with its line.
func wildcardResources(n *yaml.Node, visit func(line int)) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			if key.Value == "Resource" {
				if value.Kind == yaml.ScalarNode && value.Value == "*" {
					visit(value.Line)
				}
				for _, item := range value.Content {
					if item.Kind == yaml.ScalarNode && item.Value == "*" {
						visit(item.Line)
					}
				}
			}
		}
	}
	for _, c := range n.Content {
		wildcardResources(c, visit)
	}
}

func isServiceWildcard(action string) bool {
	return action == "*" || strings.HasSuffix(action, ":*")
}

func hasAction(s statement, action string) bool {
	for _, a := range s.actions() {
		if strings.EqualFold(a, action) {
			return true
		}
	}
	return false
}

func accountRoot(d *deployment) string {
	return "arn:" + d.partition + ":iam::" + testAccount + ":root"
}

// isAccountRootKeyAdmin is the standard first statement of a key policy: the account administers its
// key through IAM. It is the one place kms:* is allowed.
func isAccountRootKeyAdmin(d *deployment, s statement) bool {
	principal, _ := s.doc["Principal"].(map[string]any)
	return s.resource && d.typeOf(s.owner) == "AWS::KMS::Key" &&
		fmt.Sprint(principal["AWS"]) == accountRoot(d) && len(s.actions()) == 1 && s.actions()[0] == "kms:*"
}
