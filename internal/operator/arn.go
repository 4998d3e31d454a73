package operator

import (
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
)

// resourceARN is arn:<partition>:states:<region>:<account>:<stateMachine|execution>:<machine>[:<execution>].
type resourceARN struct {
	partition, region, account, kind, machine, execution string
}

func parseStatesARN(s string) (resourceARN, bool) {
	parts := strings.Split(s, ":")
	if len(parts) < 7 || parts[0] != "arn" || parts[2] != "states" || parts[3] == "" || parts[4] == "" || parts[6] == "" {
		return resourceARN{}, false
	}
	a := resourceARN{partition: parts[1], region: parts[3], account: parts[4], kind: parts[5], machine: parts[6]}
	switch {
	case a.kind == "stateMachine" && len(parts) == 7:
	case a.kind == "execution" && len(parts) == 8 && parts[7] != "":
		a.execution = parts[7]
	default:
		return resourceARN{}, false
	}
	return a, true
}

// stateMachineARN checks an ARN given with --state-machine or ROTATOR_STATE_MACHINE_ARN.
func stateMachineARN(s string) (resourceARN, error) {
	a, ok := parseStatesARN(s)
	if !ok || a.kind != "stateMachine" {
		return resourceARN{}, usageErrorf("%q is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)", s)
	}
	return a, nil
}

// executionARN accepts an execution ARN, or an execution name when the state machine is known:
// names are what list prints and what an operator copies.
func executionARN(arg, machine string) (string, error) {
	if strings.HasPrefix(arg, "arn:") {
		a, ok := parseStatesARN(arg)
		if !ok || a.kind != "execution" {
			return "", usageErrorf("%q is not an execution ARN (arn:aws:states:<region>:<account>:execution:<state-machine>:<name>)", arg)
		}
		return arg, nil
	}
	if machine == "" {
		return "", usageErrorf("%q is not an execution ARN; to give an execution name, also give --state-machine or set %s", arg, envStateMachine)
	}
	sm, err := stateMachineARN(machine)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("arn:%s:states:%s:%s:execution:%s:%s", sm.partition, sm.region, sm.account, sm.machine, arg), nil
}

// inRegionOf sends a call to the region the resource lives in, so that an operator whose profile
// points at another region still reaches the execution the ARN names.
func inRegionOf(arn string) func(*sfn.Options) {
	return func(o *sfn.Options) {
		if a, ok := parseStatesARN(arn); ok {
			o.Region = a.region
		}
	}
}

// ConsoleURL is the Step Functions console page of an execution.
func ConsoleURL(executionArn string) string {
	a, ok := parseStatesARN(executionArn)
	if !ok {
		return ""
	}
	host := a.region + ".console.aws.amazon.com"
	switch a.partition {
	case "aws-us-gov":
		host = "console.amazonaws-us-gov.com"
	case "aws-cn":
		host = "console.amazonaws.cn"
	}
	return fmt.Sprintf("https://%s/states/home?region=%s#/v2/executions/details/%s", host, a.region, executionArn)
}
