package trigger

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
)

// EventBridge detail-types for KMS.
const (
	DetailTypeAPICall           = "AWS API Call via CloudTrail"
	DetailTypeServiceEvent      = "AWS Service Event via CloudTrail"
	DetailTypeCMKRotation       = "KMS CMK Rotation"
	DetailTypeCMKDeletion       = "KMS CMK Deletion"
	DetailTypeKeyMaterialExpiry = "KMS Imported Key Material Expiration"
)

const (
	kmsSource                 = "aws.kms"
	kmsEventSource            = "kms.amazonaws.com"
	keyResourceType           = "AWS::KMS::Key"
	keyMaterialRotatedMessage = "Key material rotated; the key ARN is unchanged, so Databricks needs no update."
	handledByKeyGuard         = "handled by the key guard"
	// maxReasonDetail bounds how much of an untrusted event value a reason quotes.
	maxReasonDetail = 300
)

// Event fields named in "malformed" reasons.
const (
	nativeEventKeyIDField          = "key-id"
	cloudTrailKeyMetadataARNField  = "responseElements.keyMetadata.arn"
	cloudTrailAliasNameField       = "requestParameters.aliasName"
	cloudTrailTargetKeyIDField     = "requestParameters.targetKeyId"
	cloudTrailRequestKeyIDField    = "requestParameters.keyId"
	cloudTrailServiceEventKeyField = "serviceEventDetails.keyId"
)

// cloudTrailDetail is the CloudTrail record EventBridge puts in detail. Dates inside
// requestParameters and responseElements are not ISO-8601 and are never parsed.
type cloudTrailDetail struct {
	EventSource         string          `json:"eventSource"`
	EventName           string          `json:"eventName"`
	EventID             string          `json:"eventID"`
	EventTime           string          `json:"eventTime"`
	EventType           string          `json:"eventType"`
	AWSRegion           string          `json:"awsRegion"`
	RecipientAccountID  string          `json:"recipientAccountId"`
	ErrorCode           string          `json:"errorCode"`
	ErrorMessage        string          `json:"errorMessage"`
	UserIdentity        userIdentity    `json:"userIdentity"`
	RequestParameters   json.RawMessage `json:"requestParameters"`
	ResponseElements    json.RawMessage `json:"responseElements"`
	Resources           []ctResource    `json:"resources"`
	ServiceEventDetails json.RawMessage `json:"serviceEventDetails"`
}

type userIdentity struct {
	Type           string `json:"type"`
	ARN            string `json:"arn"`
	AccountID      string `json:"accountId"`
	SessionContext struct {
		SessionIssuer struct {
			ARN string `json:"arn"`
		} `json:"sessionIssuer"`
	} `json:"sessionContext"`
}

type ctResource struct {
	ARN       string `json:"ARN"`
	Type      string `json:"type"`
	AccountID string `json:"accountId"`
}

type ctTag struct {
	TagKey   string `json:"tagKey"`
	TagValue string `json:"tagValue"`
}

type createKeyRequest struct {
	Tags []ctTag `json:"tags"`
}

type createKeyResponse struct {
	KeyMetadata struct {
		ARN   string `json:"arn"`
		KeyID string `json:"keyId"`
	} `json:"keyMetadata"`
}

type keyRequest struct {
	KeyID string  `json:"keyId"`
	Tags  []ctTag `json:"tags"`
}

type aliasRequest struct {
	AliasName   string `json:"aliasName"`
	TargetKeyID string `json:"targetKeyId"`
}

type serviceEventDetails struct {
	KeyID string `json:"keyId"`
}

type nativeDetail struct {
	KeyID string `json:"key-id"`
}

// malformedError says which part of an event could not be used.
type malformedError struct{ what string }

func (e *malformedError) Error() string { return e.what }

func malformed(format string, args ...any) error {
	return &malformedError{what: fmt.Sprintf(format, args...)}
}

// unmarshalPart decodes an optional object (null or absent decode to the zero value).
func unmarshalPart(raw json.RawMessage, field string, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return malformed("detail.%s is malformed: %v", field, err)
	}
	return nil
}

// PartitionOfRegion returns the AWS partition a region belongs to.
func PartitionOfRegion(region string) string {
	switch {
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	}
	return "aws"
}

// keyLocation is where a bare key id lives: the call's region and the account that received it.
type keyLocation struct{ region, account string }

func (d *cloudTrailDetail) location(ev events.CloudWatchEvent) keyLocation {
	loc := keyLocation{region: d.AWSRegion, account: d.RecipientAccountID}
	if loc.region == "" {
		loc.region = ev.Region
	}
	if loc.account == "" {
		loc.account = ev.AccountID
	}
	return loc
}

// keyARNFrom turns a key reference from an event (key ARN or bare key id) into a key ARN. With an
// empty reference it falls back to the key ARN among fallback (detail.resources or the envelope's
// resources). Alias references are refused: the events that carry them are handled elsewhere.
func keyARNFrom(ref, field string, loc keyLocation, fallback []string) (string, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		for _, a := range fallback {
			if k, err := kmscheck.ParseKeyARN(a); err == nil && !k.IsAlias {
				return a, nil
			}
		}
		return "", malformed("%s is missing and no key ARN is among the event's resources", field)
	}
	if strings.HasPrefix(ref, "arn:") {
		k, err := kmscheck.ParseKeyARN(ref)
		if err != nil {
			return "", malformed("%s: %v", field, err)
		}
		if k.IsAlias {
			return "", malformed("%s %q is an alias ARN, not a key", field, ref)
		}
		return ref, nil
	}
	if strings.HasPrefix(ref, "alias/") {
		return "", malformed("%s %q is an alias name, not a key", field, truncate(ref, maxReasonDetail))
	}
	built := kmscheck.KeyARN{Partition: PartitionOfRegion(loc.region), Region: loc.region, Account: loc.account, KeyID: ref}.String()
	if _, err := kmscheck.ParseKeyARN(built); err != nil {
		// The region or account may be missing from a trimmed event; the resources may still
		// name the key.
		for _, a := range fallback {
			if strings.HasSuffix(a, ":key/"+ref) {
				return a, nil
			}
		}
		return "", malformed("%s %q does not make a key ARN with region %q and account %q: %v", field, truncate(ref, maxReasonDetail), loc.region, loc.account, err)
	}
	return built, nil
}

func (d *cloudTrailDetail) resourceARNs() []string {
	var out []string
	for _, r := range d.Resources {
		if r.Type == "" || r.Type == keyResourceType {
			out = append(out, r.ARN)
		}
	}
	return out
}

func tagMap(tags []ctTag) (map[string]string, []string) {
	m := make(map[string]string, len(tags))
	keys := make([]string, 0, len(tags))
	for _, t := range tags {
		m[t.TagKey] = t.TagValue
		keys = append(keys, t.TagKey)
	}
	return m, keys
}
