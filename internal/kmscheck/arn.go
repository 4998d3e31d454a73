package kmscheck

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// KeyARN is a parsed KMS key or alias ARN.
type KeyARN struct {
	Partition string
	Region    string
	Account   string
	// KeyID is the key id of a key ARN; empty for an alias ARN until the alias is resolved.
	KeyID   string
	IsAlias bool
	// AliasName is "alias/<name>" as KMS spells it (the form CreateAlias and CloudTrail use).
	AliasName string
}

// String renders the ARN back.
func (k KeyARN) String() string {
	resource := "key/" + k.KeyID
	if k.IsAlias {
		resource = k.AliasName
	}
	return "arn:" + k.Partition + ":kms:" + k.Region + ":" + k.Account + ":" + resource
}

var (
	partitions = map[string]bool{"aws": true, "aws-us-gov": true, "aws-cn": true}
	regionRE   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	accountRE  = regexp.MustCompile(`^[0-9]{12}$`)
	// Single-Region keys have UUID ids; multi-Region keys have "mrk-" and 32 hex digits.
	keyIDRE = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|mrk-[0-9a-fA-F]{32})$`)
)

// maxAliasName is the longest alias name KMS accepts after "alias/" (256 characters with it).
const maxAliasName = 250

// IsKeyID tells whether s is a KMS key id: a UUID, or "mrk-" and 32 hex digits for a
// multi-Region key.
func IsKeyID(s string) bool { return keyIDRE.MatchString(s) }

// IsAliasName tells whether s is a KMS alias name: "alias/" then 1 to 250 letters, digits, '/',
// '_' or '-'. A loop, not a regexp: `{1,250}` compiles to 250 nested copies of the class, which
// cost every function that links this package 3.5 ms of its cold start.
func IsAliasName(s string) bool {
	name, ok := strings.CutPrefix(s, "alias/")
	if !ok || len(name) == 0 || len(name) > maxAliasName {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '/', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ParseKeyARN parses arn:<aws|aws-us-gov|aws-cn>:kms:<region>:<account>:key/<id> and the alias form
// ...:alias/<name>. Anything else is a *taskerr.InvalidInput that names the field key_arn and says
// which part is wrong, because the ARN usually comes from an operator's execution input.
func ParseKeyARN(s string) (KeyARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return KeyARN{}, invalid(s, "it is not an ARN (want arn:aws:kms:<region>:<account>:key/<key-id>)")
	}
	k := KeyARN{Partition: parts[1], Region: parts[3], Account: parts[4]}
	switch {
	case !partitions[k.Partition]:
		return KeyARN{}, invalid(s, "partition "+quote(k.Partition)+" is not aws, aws-us-gov or aws-cn")
	case parts[2] != "kms":
		return KeyARN{}, invalid(s, "service "+quote(parts[2])+" is not kms")
	case !regionRE.MatchString(k.Region):
		return KeyARN{}, invalid(s, "region "+quote(k.Region)+" is not an AWS region")
	case !accountRE.MatchString(k.Account):
		return KeyARN{}, invalid(s, "account "+quote(k.Account)+" is not a 12-digit AWS account id")
	}
	resource := parts[5]
	switch {
	case strings.HasPrefix(resource, "key/"):
		k.KeyID = strings.TrimPrefix(resource, "key/")
		if !IsKeyID(k.KeyID) {
			return KeyARN{}, invalid(s, "key id "+quote(k.KeyID)+" is neither a key UUID nor a multi-Region mrk- id")
		}
	case strings.HasPrefix(resource, "alias/"):
		if !IsAliasName(resource) {
			return KeyARN{}, invalid(s, "alias "+quote(resource)+" has characters KMS does not allow in alias names")
		}
		k.IsAlias, k.AliasName = true, resource
	default:
		return KeyARN{}, invalid(s, "resource "+quote(resource)+" is neither key/<key-id> nor alias/<name>")
	}
	return k, nil
}

func invalid(s, why string) error {
	return taskerr.Errorf[taskerr.InvalidInput]("key_arn %s is not a KMS key or alias ARN: %s", quote(s), why)
}

// quote keeps control characters from an untrusted ARN out of logs and execution histories.
func quote(s string) string {
	const max = 300
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}
