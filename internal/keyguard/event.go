package keyguard

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/eventskip"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/principals"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/trigger"
)

// Change is what happened to the key.
type Change string

// The changes the guard handles. The values are the event names as CloudTrail and EventBridge
// spell them.
const (
	ChangeScheduleKeyDeletion Change = "ScheduleKeyDeletion"
	ChangeDisableKey          Change = "DisableKey"
	ChangePutKeyPolicy        Change = "PutKeyPolicy"
	ChangeKeyDeleted          Change = trigger.DetailTypeCMKDeletion
)

// KeyChange is what the guard reads from one event.
type KeyChange struct {
	Change Change
	// KeyARN is set when the event names the key by its ARN (in keyId or in its resources).
	KeyARN string
	// KeyRef is the key id or alias the call named, to resolve with DescribeKey when KeyARN is empty.
	KeyRef    string
	EventID   string
	EventName string
	Actor     string
	EventTime string
	// Policy is the new key policy of a PutKeyPolicy (requestParameters.policy); PolicyMissing says
	// the record did not carry it, so the guard cannot tell whether Databricks kept its grant.
	Policy        string
	PolicyMissing bool
}

// Skip is an event the guard does not act on: not one of its changes, a failed call, one of the
// IGNORED_PRINCIPAL_ARNS, or an event it cannot read (Malformed).
type Skip = eventskip.Skip

var (
	skip      = eventskip.New
	malformed = eventskip.Malformed
)

const (
	kmsSource       = "aws.kms"
	kmsEventSource  = "kms.amazonaws.com"
	keyResourceType = "AWS::KMS::Key"
	// maxQuoted bounds how much of an untrusted event value a reason quotes.
	maxQuoted = 200
)

type cloudTrailDetail struct {
	EventSource  string `json:"eventSource"`
	EventName    string `json:"eventName"`
	EventID      string `json:"eventID"`
	EventTime    string `json:"eventTime"`
	ErrorCode    string `json:"errorCode"`
	UserIdentity struct {
		Type           string `json:"type"`
		ARN            string `json:"arn"`
		InvokedBy      string `json:"invokedBy"`
		SessionContext struct {
			SessionIssuer struct {
				ARN string `json:"arn"`
			} `json:"sessionIssuer"`
		} `json:"sessionContext"`
	} `json:"userIdentity"`
	RequestParameters json.RawMessage `json:"requestParameters"`
	Resources         []struct {
		ARN  string `json:"ARN"`
		Type string `json:"type"`
	} `json:"resources"`
}

// ParseEvent reads the key change from an EventBridge event. It calls nothing. Every error it
// returns is a *Skip that says why the event is not acted on.
func ParseEvent(ev events.CloudWatchEvent, ignoredPrincipals []string) (KeyChange, error) {
	kc := KeyChange{EventID: ev.ID, EventName: ev.DetailType}
	if ev.Source != kmsSource {
		return kc, skip("source %s is not %s", quote(ev.Source), kmsSource)
	}
	switch ev.DetailType {
	case trigger.DetailTypeAPICall:
		return parseCloudTrail(ev, ignoredPrincipals, kc)
	case trigger.DetailTypeCMKDeletion:
		return parseDeletion(ev, kc)
	}
	return kc, skip("detail-type %s is not one the key guard handles", quote(ev.DetailType))
}

func parseCloudTrail(ev events.CloudWatchEvent, ignoredPrincipals []string, kc KeyChange) (KeyChange, error) {
	var ct cloudTrailDetail
	if err := json.Unmarshal(ev.Detail, &ct); err != nil {
		return kc, malformed("malformed CloudTrail detail: %v", err)
	}
	if ct.EventID != "" {
		kc.EventID = ct.EventID
	}
	if ct.EventName != "" {
		kc.EventName = ct.EventName
	}
	kc.EventTime = ct.EventTime
	if kc.EventTime == "" && !ev.Time.IsZero() {
		kc.EventTime = ev.Time.UTC().Format(time.RFC3339)
	}
	kc.Actor = firstNonEmpty(ct.UserIdentity.ARN, ct.UserIdentity.SessionContext.SessionIssuer.ARN, ct.UserIdentity.InvokedBy, ct.UserIdentity.Type)
	if ct.EventSource != kmsEventSource {
		return kc, skip("eventSource %s is not %s", quote(ct.EventSource), kmsEventSource)
	}
	switch Change(ct.EventName) {
	case ChangeScheduleKeyDeletion, ChangeDisableKey, ChangePutKeyPolicy:
		kc.Change = Change(ct.EventName)
	default:
		return kc, skip("KMS %s calls do not concern the key guard", quote(ct.EventName))
	}
	if ct.ErrorCode != "" {
		return kc, skip("the %s call failed with %s, so the key did not change", kc.EventName, quote(ct.ErrorCode))
	}
	if who := principals.Match(ignoredPrincipals, ct.UserIdentity.ARN, ct.UserIdentity.SessionContext.SessionIssuer.ARN); who != "" {
		return kc, skip("the call was made by %s, which IGNORED_PRINCIPAL_ARNS lists", who)
	}
	var req struct {
		KeyID  string  `json:"keyId"`
		Policy *string `json:"policy"`
	}
	if len(ct.RequestParameters) > 0 && string(ct.RequestParameters) != "null" {
		if err := json.Unmarshal(ct.RequestParameters, &req); err != nil {
			return kc, malformed("malformed requestParameters: %v", err)
		}
	}
	if kc.Change == ChangePutKeyPolicy {
		// CloudTrail may omit a large request parameter; the guard then errs on the side of an alarm.
		kc.PolicyMissing = req.Policy == nil || strings.TrimSpace(*req.Policy) == ""
		if !kc.PolicyMissing {
			kc.Policy = *req.Policy
		}
	}
	var resources []string
	for _, r := range ct.Resources {
		if r.Type == "" || r.Type == keyResourceType {
			resources = append(resources, r.ARN)
		}
	}
	return keyFromReference(kc, strings.TrimSpace(req.KeyID), resources)
}

// keyFromReference sets KeyARN or KeyRef from requestParameters.keyId and the record's resources.
// The resources name the key the call acted on: they are preferred to an alias, which may point
// elsewhere by the time the guard resolves it.
func keyFromReference(kc KeyChange, ref string, resources []string) (KeyChange, error) {
	keyResource := func(id string) string {
		for _, a := range resources {
			if k, err := kmscheck.ParseKeyARN(a); err == nil && !k.IsAlias && (id == "" || strings.EqualFold(k.KeyID, id)) {
				return a
			}
		}
		return ""
	}
	switch {
	case ref == "":
		if kc.KeyARN = keyResource(""); kc.KeyARN == "" {
			return kc, malformed("requestParameters.keyId is missing and no key ARN is among the event's resources")
		}
	case strings.HasPrefix(ref, "arn:"):
		k, err := kmscheck.ParseKeyARN(ref)
		if err != nil {
			return kc, malformed("requestParameters.keyId: %v", err)
		}
		if !k.IsAlias {
			kc.KeyARN = ref
		} else if kc.KeyARN = keyResource(""); kc.KeyARN == "" {
			kc.KeyRef = ref
		}
	case strings.HasPrefix(ref, "alias/"):
		if !kmscheck.IsAliasName(ref) {
			return kc, malformed("requestParameters.keyId %s is not a KMS alias name", quote(ref))
		}
		if kc.KeyARN = keyResource(""); kc.KeyARN == "" {
			kc.KeyRef = ref
		}
	default:
		if !kmscheck.IsKeyID(ref) {
			return kc, malformed("requestParameters.keyId %s is neither a key ARN, a key id nor an alias", quote(ref))
		}
		if kc.KeyARN = keyResource(ref); kc.KeyARN == "" {
			kc.KeyRef = ref
		}
	}
	return kc, nil
}

// parseDeletion reads a native "KMS CMK Deletion": resources[0] is the key ARN; detail.key-id in the
// envelope's region and account is the fallback for a trimmed event.
func parseDeletion(ev events.CloudWatchEvent, kc KeyChange) (KeyChange, error) {
	kc.Change = ChangeKeyDeleted
	kc.Actor = kmsEventSource
	if !ev.Time.IsZero() {
		kc.EventTime = ev.Time.UTC().Format(time.RFC3339)
	}
	if len(ev.Resources) > 0 {
		if k, err := kmscheck.ParseKeyARN(ev.Resources[0]); err == nil && !k.IsAlias {
			kc.KeyARN = ev.Resources[0]
			return kc, nil
		}
	}
	var detail struct {
		KeyID string `json:"key-id"`
	}
	_ = json.Unmarshal(ev.Detail, &detail)
	if kmscheck.IsKeyID(detail.KeyID) {
		arn := kmscheck.KeyARN{Partition: trigger.PartitionOfRegion(ev.Region), Region: ev.Region, Account: ev.AccountID, KeyID: detail.KeyID}.String()
		if _, err := kmscheck.ParseKeyARN(arn); err == nil {
			kc.KeyARN = arn
			return kc, nil
		}
	}
	return kc, malformed("%s event names no key: resources[0] is not a key ARN and detail.key-id %s with region %s and account %s makes none",
		ev.DetailType, quote(detail.KeyID), quote(ev.Region), quote(ev.AccountID))
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// quote keeps control characters and length of untrusted values out of logs.
func quote(s string) string {
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	return strconv.Quote(s)
}
