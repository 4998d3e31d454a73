// Package keyage lists every workspace of the Databricks account with the keys it uses (managed
// services and storage), since when it has used each, and whether that is longer than the
// deployment's maximum key age. cmkrotate keys prints it; the scheduled KeyAgeCheck function
// publishes a "Key Age Exceeded" event for each key over the limit.
//
// Databricks does not say when a workspace moved onto a key configuration. The rotator's own history
// does: the latest succeeded rotation execution whose result moved the workspace onto that
// configuration. Without one (the configuration predates the rotator, or the history has expired
// after 90 days), the configuration's creation time is the answer: a workspace cannot use a
// configuration before it exists, so the age shown is then an upper bound, which errs on the side
// of flagging a key.
package keyage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/databricks/databricks-sdk-go/service/provisioning"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/kmscheck"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
)

// DetailKeyAgeExceeded is the event the scheduled check publishes per key in use past the maximum age.
const DetailKeyAgeExceeded = "Key Age Exceeded"

// Account is the part of the Databricks account API the inventory reads.
type Account interface {
	ListWorkspaces(ctx context.Context) ([]provisioning.Workspace, error)
	ListKeyConfigs(ctx context.Context) ([]provisioning.CustomerManagedKey, error)
}

// Aliases lists KMS aliases, to name each key as operators know it.
type Aliases interface {
	ListAliases(ctx context.Context, params *kms.ListAliasesInput, optFns ...func(*kms.Options)) (*kms.ListAliasesOutput, error)
}

// History reads the rotation state machine's executions.
type History interface {
	ListExecutions(ctx context.Context, params *sfn.ListExecutionsInput, optFns ...func(*sfn.Options)) (*sfn.ListExecutionsOutput, error)
	DescribeExecution(ctx context.Context, params *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

var (
	_ Aliases = (*kms.Client)(nil)
	_ History = (*sfn.Client)(nil)
)

// Inventory reads the account, KMS aliases and the rotator's history.
type Inventory struct {
	Account Account
	// Aliases and History are optional: without them the alias comes from the key configuration and
	// "since" from its creation time.
	Aliases Aliases
	History History
	// StateMachineARN is the rotation state machine whose history says when a workspace moved.
	StateMachineARN string
	// MaxAge is the maximum key age; 0 flags nothing.
	MaxAge time.Duration
	// MaxExecutions bounds how much history is read (default 200, newest first).
	MaxExecutions int
}

// Sources of "since".
const (
	SinceRotation       = "rotation"
	SinceConfigCreation = "key configuration created"
)

// Row is one key a workspace uses.
type Row struct {
	WorkspaceID   string `json:"workspace_id"`
	WorkspaceName string `json:"workspace_name"`
	// Use is managed_services or storage.
	Use         string    `json:"use"`
	KeyConfigID string    `json:"key_config_id"`
	KeyARN      string    `json:"key_arn"`
	Alias       string    `json:"alias,omitempty"`
	Since       time.Time `json:"since"`
	SinceSource string    `json:"since_source"`
	// Execution is the rotation that moved the workspace onto the key, when the history says so.
	Execution   string  `json:"execution,omitempty"`
	AgeDays     float64 `json:"age_days"`
	MaxAgeDays  float64 `json:"max_age_days,omitempty"`
	AgeExceeded bool    `json:"age_exceeded"`
}

// Report is the whole inventory.
type Report struct {
	CheckedAt time.Time `json:"checked_at"`
	Rows      []Row     `json:"rows"`
	// Unencrypted lists workspaces with no customer-managed key at all.
	Unencrypted []string `json:"unencrypted,omitempty"`
}

// Build reads everything and returns one row per workspace and use, sorted by workspace.
func (inv *Inventory) Build(ctx context.Context, now time.Time) (Report, error) {
	workspaces, err := inv.Account.ListWorkspaces(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("listing the account's workspaces: %w", err)
	}
	configs, err := inv.Account.ListKeyConfigs(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("listing key configurations: %w", err)
	}
	byID := map[string]provisioning.CustomerManagedKey{}
	for _, c := range configs {
		byID[c.CustomerManagedKeyId] = c
	}
	moves, err := inv.moves(ctx)
	if err != nil {
		return Report{}, err
	}
	aliases, err := inv.aliases(ctx, configs)
	if err != nil {
		return Report{}, err
	}

	rep := Report{CheckedAt: now.UTC(), Rows: []Row{}}
	slices.SortFunc(workspaces, func(a, b provisioning.Workspace) int { return strings.Compare(a.WorkspaceName, b.WorkspaceName) })
	for _, ws := range workspaces {
		id := strconv.FormatInt(ws.WorkspaceId, 10)
		if ws.ManagedServicesCustomerManagedKeyId == "" && ws.StorageCustomerManagedKeyId == "" {
			rep.Unencrypted = append(rep.Unencrypted, id)
			continue
		}
		for _, use := range []struct{ name, configID string }{
			{"managed_services", ws.ManagedServicesCustomerManagedKeyId}, {"storage", ws.StorageCustomerManagedKeyId},
		} {
			if use.configID == "" {
				continue
			}
			row := Row{WorkspaceID: id, WorkspaceName: ws.WorkspaceName, Use: use.name, KeyConfigID: use.configID}
			if c, ok := byID[use.configID]; ok {
				if c.AwsKeyInfo != nil {
					row.KeyARN, row.Alias = c.AwsKeyInfo.KeyArn, c.AwsKeyInfo.KeyAlias
				}
				if c.CreationTime > 0 {
					row.Since, row.SinceSource = time.UnixMilli(c.CreationTime).UTC(), SinceConfigCreation
				}
			}
			if a := aliases[keyOf(row.KeyARN).KeyID]; a != "" {
				row.Alias = a
			}
			if m, ok := moves[move{id, use.configID}]; ok {
				row.Since, row.SinceSource, row.Execution = m.at, SinceRotation, m.execution
			}
			if !row.Since.IsZero() {
				row.AgeDays = days(now.Sub(row.Since))
			}
			if inv.MaxAge > 0 {
				row.MaxAgeDays = days(inv.MaxAge)
				row.AgeExceeded = !row.Since.IsZero() && now.Sub(row.Since) > inv.MaxAge
			}
			rep.Rows = append(rep.Rows, row)
		}
	}
	return rep, nil
}

func days(d time.Duration) float64 {
	return float64(int(d.Hours()/24*10)) / 10 // one decimal, rounded down: never overstate an age
}

type move struct{ workspaceID, keyConfigID string }

type moved struct {
	at        time.Time
	execution string
}

// moves reads the succeeded rotations, newest first: the first one that moved a workspace onto a
// configuration is when its current use began. Only the output of succeeded executions is read
// (Summarize's results and key_config_id); a workspace rotated by a failed execution falls back to
// the configuration's creation time.
func (inv *Inventory) moves(ctx context.Context) (map[move]moved, error) {
	out := map[move]moved{}
	if inv.History == nil || inv.StateMachineARN == "" {
		return out, nil
	}
	limit := inv.MaxExecutions
	if limit <= 0 {
		limit = 200
	}
	var token *string
	read := 0
	for read < limit {
		page, err := inv.History.ListExecutions(ctx, &sfn.ListExecutionsInput{
			StateMachineArn: aws.String(inv.StateMachineARN), StatusFilter: sfntypes.ExecutionStatusSucceeded,
			MaxResults: int32(min(limit-read, 100)), NextToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("listing rotations of %s: %w", inv.StateMachineARN, err)
		}
		for _, e := range page.Executions {
			read++
			desc, err := inv.History.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: e.ExecutionArn})
			if err != nil {
				return nil, fmt.Errorf("reading rotation %s: %w", aws.ToString(e.ExecutionArn), err)
			}
			var summary struct {
				KeyConfigID string `json:"key_config_id"`
				Results     []struct {
					WorkspaceID string `json:"workspace_id"`
					Outcome     string `json:"outcome"`
				} `json:"results"`
			}
			if json.Unmarshal([]byte(aws.ToString(desc.Output)), &summary) != nil || summary.KeyConfigID == "" {
				continue // a dry run, or an output of another shape
			}
			at := aws.ToTime(desc.StopDate)
			for _, r := range summary.Results {
				if r.Outcome != rotation.OutcomeRotated && r.Outcome != rotation.OutcomeRotatedComputeDown {
					continue
				}
				k := move{r.WorkspaceID, summary.KeyConfigID}
				if prev, seen := out[k]; !seen || at.After(prev.at) {
					out[k] = moved{at: at.UTC(), execution: aws.ToString(e.Name)}
				}
			}
		}
		if token = page.NextToken; token == nil {
			break
		}
	}
	return out, nil
}

// aliases maps key ids to an alias name, one ListAliases per region of the configured keys.
func (inv *Inventory) aliases(ctx context.Context, configs []provisioning.CustomerManagedKey) (map[string]string, error) {
	out := map[string]string{}
	if inv.Aliases == nil {
		return out, nil
	}
	var regions []string
	for _, c := range configs {
		if c.AwsKeyInfo == nil {
			continue
		}
		if r := keyOf(c.AwsKeyInfo.KeyArn).Region; r != "" && !slices.Contains(regions, r) {
			regions = append(regions, r)
		}
	}
	for _, region := range regions {
		var marker *string
		for {
			page, err := inv.Aliases.ListAliases(ctx, &kms.ListAliasesInput{Marker: marker}, func(o *kms.Options) { o.Region = region })
			if err != nil {
				return nil, fmt.Errorf("listing KMS aliases in %s: %w", region, err)
			}
			for _, a := range page.Aliases {
				id := aws.ToString(a.TargetKeyId)
				// The first alias is kept; aliases under alias/aws/ belong to AWS managed keys.
				if id != "" && out[id] == "" && !strings.HasPrefix(aws.ToString(a.AliasName), "alias/aws/") {
					out[id] = aws.ToString(a.AliasName)
				}
			}
			if !page.Truncated || page.NextMarker == nil {
				break
			}
			marker = page.NextMarker
		}
	}
	return out, nil
}

// keyOf parses a key configuration's key ARN; a malformed one (the zero KeyARN) has no alias and
// no region to look in.
func keyOf(arn string) kmscheck.KeyARN {
	k, err := kmscheck.ParseKeyARN(arn)
	if err != nil {
		return kmscheck.KeyARN{}
	}
	return k
}
