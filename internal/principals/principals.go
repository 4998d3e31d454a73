// Package principals reads IGNORED_PRINCIPAL_ARNS, the rotator's own roles, and matches a
// CloudTrail caller against them. The trigger and the key guard both ignore the KMS calls those
// roles make: a rotation that changes a key policy or an alias must not trigger itself.
package principals

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Env is the setting's name.
const Env = "IGNORED_PRINCIPAL_ARNS"

var principalARN = regexp.MustCompile(`^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:\S+$`)

// Parse reads the comma-separated list; every entry that is not an IAM or STS ARN is a problem,
// named in the returned list.
func Parse(value string) (arns, problems []string) {
	for _, a := range strings.Split(value, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if !principalARN.MatchString(a) {
			problems = append(problems, fmt.Sprintf("%s entry %q is not an IAM or STS ARN", Env, a))
			continue
		}
		arns = append(arns, a)
	}
	return arns, problems
}

// Match returns the caller ARN or the ARN of the role whose session made the call, whichever the
// list holds, or "" when neither is listed.
func Match(arns []string, callerARN, sessionIssuerARN string) string {
	for _, candidate := range []string{callerARN, sessionIssuerARN} {
		if candidate != "" && slices.Contains(arns, candidate) {
			return candidate
		}
	}
	return ""
}
