package principals

import (
	"slices"
	"strings"
	"testing"
)

func TestParseKeepsIAMAndSTSARNsAndNamesEveryOtherEntry(t *testing.T) {
	arns, problems := Parse(" arn:aws:iam::111122223333:role/rotator , ,arn:aws-us-gov:sts::111122223333:assumed-role/r/s,role/rotator,arn:aws:s3:::bucket")
	if want := []string{"arn:aws:iam::111122223333:role/rotator", "arn:aws-us-gov:sts::111122223333:assumed-role/r/s"}; !slices.Equal(arns, want) {
		t.Errorf("arns = %v, want %v", arns, want)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], `"role/rotator"`) || !strings.Contains(problems[1], `"arn:aws:s3:::bucket"`) {
		t.Errorf("problems = %v, want the two bad entries named", problems)
	}
}

func TestMatchFindsTheCallerOrTheRoleBehindItsSession(t *testing.T) {
	arns := []string{"arn:aws:iam::111122223333:role/rotator"}
	if got := Match(arns, "arn:aws:sts::111122223333:assumed-role/rotator/s", "arn:aws:iam::111122223333:role/rotator"); got != arns[0] {
		t.Errorf("Match by session issuer = %q", got)
	}
	if got := Match(arns, "arn:aws:iam::111122223333:user/alice", ""); got != "" {
		t.Errorf("an unlisted caller matched %q", got)
	}
}
