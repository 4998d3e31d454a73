package trigger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/principals"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// Action is what the handler does with an event.
type Action string

// Actions.
const (
	ActionStart  Action = "Start"
	ActionAudit  Action = "Audit"
	ActionIgnore Action = "Ignore"
)

// Decision is what Decide makes of one event. Every decision has a Reason, written for the
// operator reading the logs.
type Decision struct {
	Action Action
	Reason string
	// KeyARN, EventID and EventName are filled as far as the event allows, for the logs.
	KeyARN  string
	EventID string
	// ActorRole is the role behind an assumed-role session that made the call, for the policy.
	ActorRole    string
	EventName    string
	WorkspaceIDs []string
	// Request and ExecutionName are set for ActionStart.
	Request       rotation.Request
	ExecutionName string
	// Audit is the detail to publish for ActionAudit.
	Audit *KeyMaterialRotated
}

// Input is the execution input for a Start decision. encoding/json writes struct fields in order
// and the slices are sorted, so the same event always yields the same bytes: Step Functions then
// treats a redelivered start of an open execution as the same start.
func (d Decision) Input() (string, error) {
	b, err := json.Marshal(d.Request)
	if err != nil {
		return "", fmt.Errorf("encode execution input: %w", err)
	}
	return string(b), nil
}

// KeyMaterialRotated is the detail of the audit event published when a key's material rotates.
type KeyMaterialRotated struct {
	KeyARN       string   `json:"key_arn"`
	EventName    string   `json:"event_name"`
	EventID      string   `json:"event_id"`
	WorkspaceIDs []string `json:"workspace_ids,omitempty"`
	Message      string   `json:"message"`
}

// TagLookup returns the current tags of a key (key -> value). It returns an error wrapping
// ErrKeyNotFound when the key does not exist, and any other error for AWS failures.
type TagLookup func(ctx context.Context, keyARN string) (map[string]string, error)

// ErrKeyNotFound is wrapped by a TagLookup when the key does not exist (any more).
var ErrKeyNotFound = errors.New("KMS key not found")

// Decide works out what to do with an event. It calls nothing but lookup, and returns an error only
// when lookup fails with something other than ErrKeyNotFound: everything wrong with the event itself
// is an Ignore decision with the reason, because retrying an unusable event cannot help.
func Decide(ctx context.Context, cfg Config, ev events.CloudWatchEvent, lookup TagLookup) (Decision, error) {
	d := Decision{EventID: ev.ID, EventName: ev.DetailType}
	if ev.Source != kmsSource {
		return d.ignore("source %q is not %s", truncate(ev.Source, maxReasonDetail), kmsSource), nil
	}
	switch ev.DetailType {
	case DetailTypeAPICall, DetailTypeServiceEvent:
		return decideCloudTrail(ctx, cfg, ev, lookup, d)
	case DetailTypeCMKRotation:
		keyARN, err := nativeKeyARN(ev)
		if err != nil {
			return d.ignore("malformed %s event: %v", ev.DetailType, err), nil
		}
		d.KeyARN = keyARN
		return decideAudit(ctx, cfg, lookup, d)
	case DetailTypeCMKDeletion, DetailTypeKeyMaterialExpiry:
		d.KeyARN, _ = nativeKeyARN(ev)
		return d.ignore("%s is %s", ev.DetailType, handledByKeyGuard), nil
	}
	return d.ignore("detail-type %q is not one the trigger handles", truncate(ev.DetailType, maxReasonDetail)), nil
}

func decideCloudTrail(ctx context.Context, cfg Config, ev events.CloudWatchEvent, lookup TagLookup, d Decision) (Decision, error) {
	raw := strings.TrimSpace(string(ev.Detail))
	if raw == "" || raw == "null" {
		return d.ignore("malformed event: %s event has no detail", ev.DetailType), nil
	}
	var ct cloudTrailDetail
	if err := json.Unmarshal(ev.Detail, &ct); err != nil {
		return d.ignore("malformed detail: %v", err), nil
	}
	if ct.EventID != "" {
		d.EventID = ct.EventID
	}
	if ct.EventName != "" {
		d.EventName = ct.EventName
	}
	if ct.EventSource != "" && ct.EventSource != kmsEventSource {
		return d.ignore("eventSource %q is not %s", truncate(ct.EventSource, maxReasonDetail), kmsEventSource), nil
	}
	if ct.ErrorCode != "" {
		return d.ignore("the %s call failed with %s, so nothing changed", d.EventName, truncate(ct.ErrorCode, maxReasonDetail)), nil
	}
	if who := ignoredPrincipal(cfg, ct.UserIdentity); who != "" {
		return d.ignore("the call was made by %s, which IGNORED_PRINCIPAL_ARNS lists (the rotator's own calls do not trigger it)", who), nil
	}
	eventTime := ct.EventTime
	if eventTime == "" {
		eventTime = envelopeTime(ev)
	}
	d.ActorRole = ct.UserIdentity.SessionContext.SessionIssuer.ARN
	trig := rotation.Trigger{EventID: d.EventID, EventName: d.EventName, Actor: ct.UserIdentity.ARN, EventTime: eventTime}
	loc := ct.location(ev)

	var (
		next Decision
		err  error
	)
	switch ct.EventName {
	case "CreateKey":
		next, err = decideCreateKey(cfg, &ct, d, trig)
	case "TagResource":
		next, err = decideTagResource(ctx, cfg, &ct, loc, lookup, d, trig)
	case "CreateAlias", "UpdateAlias":
		next, err = decideAlias(ctx, cfg, &ct, loc, lookup, d, trig)
	case "RotateKeyOnDemand", "RotateKey":
		next, err = decideRotationCall(ctx, cfg, &ct, loc, lookup, d)
	case "ScheduleKeyDeletion", "DisableKey", "DeleteKey", "DeleteImportedKeyMaterial", "DeleteExpiredKeyMaterial":
		var req keyRequest
		if unmarshalPart(ct.RequestParameters, "requestParameters", &req) == nil {
			d.KeyARN, _ = keyARNFrom(req.KeyID, cloudTrailRequestKeyIDField, loc, ct.resourceARNs())
		}
		return d.ignore("%s is %s", d.EventName, handledByKeyGuard), nil
	default:
		return d.ignore("KMS %s events do not concern the trigger", truncate(d.EventName, maxReasonDetail)), nil
	}
	var bad *malformedError
	if errors.As(err, &bad) {
		return next.ignore("malformed %s event: %s", d.EventName, bad.what), nil
	}
	return next, err
}

func decideCreateKey(cfg Config, ct *cloudTrailDetail, d Decision, trig rotation.Trigger) (Decision, error) {
	var req createKeyRequest
	if err := unmarshalPart(ct.RequestParameters, "requestParameters", &req); err != nil {
		return d, err
	}
	var resp createKeyResponse
	if err := unmarshalPart(ct.ResponseElements, "responseElements", &resp); err != nil {
		return d, err
	}
	if resp.KeyMetadata.ARN == "" {
		return d, malformed("%s is missing", cloudTrailKeyMetadataARNField)
	}
	keyARN, err := keyARNFrom(resp.KeyMetadata.ARN, cloudTrailKeyMetadataARNField, keyLocation{}, nil)
	if err != nil {
		return d, err
	}
	d.KeyARN = keyARN
	tags, _ := tagMap(req.Tags)
	return decideFromTags(cfg, d, keyARN, "", tags, trig, "CreateKey")
}

func decideTagResource(ctx context.Context, cfg Config, ct *cloudTrailDetail, loc keyLocation, lookup TagLookup, d Decision, trig rotation.Trigger) (Decision, error) {
	var req keyRequest
	if err := unmarshalPart(ct.RequestParameters, "requestParameters", &req); err != nil {
		return d, err
	}
	keyARN, err := keyARNFrom(req.KeyID, cloudTrailRequestKeyIDField, loc, ct.resourceARNs())
	if err != nil {
		return d, err
	}
	d.KeyARN = keyARN
	_, added := tagMap(req.Tags)
	if !hasTagUnder(cfg.TagPrefix, added) {
		return d.ignore("TagResource added no tag under %s", cfg.TagPrefix), nil
	}
	// The event carries only the tags added by this call; the decision needs all of them.
	tags, err := lookup(ctx, keyARN)
	if errors.Is(err, ErrKeyNotFound) {
		return d.ignore("key %s no longer exists", keyARN), nil
	}
	if err != nil {
		return d, err
	}
	return decideFromTags(cfg, d, keyARN, "", tags, trig, "TagResource")
}

func decideAlias(ctx context.Context, cfg Config, ct *cloudTrailDetail, loc keyLocation, lookup TagLookup, d Decision, trig rotation.Trigger) (Decision, error) {
	var req aliasRequest
	if err := unmarshalPart(ct.RequestParameters, "requestParameters", &req); err != nil {
		return d, err
	}
	if req.AliasName == "" {
		return d, malformed("%s is missing", cloudTrailAliasNameField)
	}
	if !strings.HasPrefix(req.AliasName, cfg.AliasPrefix) {
		return d.ignore("alias %s is outside ALIAS_PREFIX %s", truncate(req.AliasName, maxReasonDetail), cfg.AliasPrefix), nil
	}
	var keyResources []string
	for _, a := range ct.resourceARNs() {
		if strings.Contains(a, ":key/") {
			keyResources = append(keyResources, a)
		}
	}
	keyARN, err := keyARNFrom(req.TargetKeyID, cloudTrailTargetKeyIDField, loc, keyResources)
	if err != nil {
		return d, err
	}
	d.KeyARN = keyARN
	tags, err := lookup(ctx, keyARN)
	if errors.Is(err, ErrKeyNotFound) {
		return d.ignore("alias %s targets key %s, which no longer exists", req.AliasName, keyARN), nil
	}
	if err != nil {
		return d, err
	}
	return decideFromTags(cfg, d, keyARN, req.AliasName, tags, trig, d.EventName+" "+req.AliasName)
}

// decideFromTags starts a rotation when the tags opt the key in and are valid.
func decideFromTags(cfg Config, d Decision, keyARN, alias string, tags map[string]string, trig rotation.Trigger, what string) (Decision, error) {
	kt, err := ParseTags(cfg.TagPrefix, tags)
	if err != nil {
		return d.ignore("key %s: %v; nothing started", keyARN, err), nil
	}
	if kt.WorkspaceIDs == nil {
		return d.ignore("key %s has no %s%s tag, so it has not opted in", keyARN, cfg.TagPrefix, TagWorkspace), nil
	}
	d.Action = ActionStart
	d.WorkspaceIDs = kt.WorkspaceIDs
	d.Request = rotation.Request{
		WorkspaceIDs:              kt.WorkspaceIDs,
		KeyARN:                    keyARN,
		KeyAlias:                  alias,
		UseCases:                  kt.UseCases,
		ReuseKeyForClusterVolumes: kt.ReuseKeyForClusterVolumes,
		DryRun:                    kt.DryRun,
		Trigger:                   &trig,
	}
	d.ExecutionName = ExecutionName(keyARN, kt.WorkspaceIDs, trig.EventID)
	mode := "rotate"
	if kt.DryRun {
		mode = "plan (dry run)"
	}
	d.Reason = fmt.Sprintf("%s: %s workspace(s) %s onto key %s for %s", what, mode, strings.Join(kt.WorkspaceIDs, ", "), keyARN, strings.Join(kt.UseCases, " and "))
	return d, nil
}

func decideRotationCall(ctx context.Context, cfg Config, ct *cloudTrailDetail, loc keyLocation, lookup TagLookup, d Decision) (Decision, error) {
	var req keyRequest
	if err := unmarshalPart(ct.RequestParameters, "requestParameters", &req); err != nil {
		return d, err
	}
	ref, field := req.KeyID, cloudTrailRequestKeyIDField
	if ref == "" {
		var sed serviceEventDetails
		if err := unmarshalPart(ct.ServiceEventDetails, "serviceEventDetails", &sed); err != nil {
			return d, err
		}
		ref, field = sed.KeyID, cloudTrailServiceEventKeyField
	}
	keyARN, err := keyARNFrom(ref, field, loc, ct.resourceARNs())
	if err != nil {
		return d, err
	}
	d.KeyARN = keyARN
	return decideAudit(ctx, cfg, lookup, d)
}

// decideAudit records a key material rotation. The tags only add the workspace ids to the audit
// event, so a key without (valid) tags is still audited.
func decideAudit(ctx context.Context, cfg Config, lookup TagLookup, d Decision) (Decision, error) {
	d.Action = ActionAudit
	d.Reason = fmt.Sprintf("%s: key material of %s rotated; the key ARN is unchanged, so no workspace needs an update", d.EventName, d.KeyARN)
	tags, err := lookup(ctx, d.KeyARN)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		d.Reason += "; the key no longer exists"
	case err != nil:
		return d, err
	default:
		kt, err := ParseTags(cfg.TagPrefix, tags)
		if err != nil {
			d.Reason += fmt.Sprintf("; workspace ids left out: %v", err)
		}
		d.WorkspaceIDs = kt.WorkspaceIDs
	}
	d.Audit = &KeyMaterialRotated{
		KeyARN:       d.KeyARN,
		EventName:    d.EventName,
		EventID:      d.EventID,
		WorkspaceIDs: d.WorkspaceIDs,
		Message:      keyMaterialRotatedMessage,
	}
	return d, nil
}

func (d Decision) ignore(format string, args ...any) Decision {
	d.Action = ActionIgnore
	d.Reason = fmt.Sprintf(format, args...)
	d.Request = rotation.Request{}
	d.ExecutionName = ""
	d.Audit = nil
	return d
}

func ignoredPrincipal(cfg Config, id userIdentity) string {
	return principals.Match(cfg.IgnoredPrincipalARNs, id.ARN, id.SessionContext.SessionIssuer.ARN)
}

// nativeKeyARN reads the key of a native KMS event: resources[0], else detail.key-id in the
// envelope's region and account.
func nativeKeyARN(ev events.CloudWatchEvent) (string, error) {
	var nd nativeDetail
	if err := unmarshalPart(ev.Detail, "detail", &nd); err != nil {
		nd = nativeDetail{}
	}
	return keyARNFrom(nd.KeyID, "detail."+nativeEventKeyIDField, keyLocation{region: ev.Region, account: ev.AccountID}, ev.Resources)
}

func envelopeTime(ev events.CloudWatchEvent) string {
	if ev.Time.IsZero() {
		return ""
	}
	return ev.Time.UTC().Format(time.RFC3339)
}

// ExecutionName is the Step Functions execution name for a start: "rotate-", the first 8 characters
// of the key id, "-", and the hex SHA-256 of the key ARN, the sorted workspace ids and the event id,
// cut to the 80 characters Step Functions allows. The same event always gives the same name, so a
// redelivery cannot start a second execution.
func ExecutionName(keyARN string, workspaceIDs []string, eventID string) string {
	ids := slices.Clone(workspaceIDs)
	sortWorkspaceIDs(ids)
	sum := sha256.Sum256([]byte(keyARN + "\n" + strings.Join(ids, ",") + "\n" + eventID))
	keyID := keyARN[strings.LastIndex(keyARN, "/")+1:]
	short := make([]byte, 0, 8)
	for i := 0; i < len(keyID) && len(short) < 8; i++ {
		if c := keyID[i]; c == '-' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') {
			short = append(short, c)
		}
	}
	name := "rotate-" + string(short) + "-" + hex.EncodeToString(sum[:])
	if len(name) > 80 {
		name = name[:80]
	}
	return name
}
