// Package invstore keeps an inventory in the execution state while it is small and in the stack's
// S3 bucket when it is not. Step Functions limits a state to 256 KiB; 5,000 clusters with their
// names alone take more. The bucket is encrypted and expires objects (template.yaml), and the key
// is derived from the execution and the workspace, so a retried task writes the same object.
package invstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/rotation"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/taskerr"
)

// S3 is the part of the S3 API the store uses.
type S3 interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ S3 = (*s3.Client)(nil)

// NewS3Client returns the S3 client for the inventory bucket. A local S3 endpoint (the sandbox, set
// by AWS_ENDPOINT_URL_S3) has no per-bucket DNS names: buckets are addressed by path there.
func NewS3Client(awsCfg aws.Config, lookup func(string) (string, bool)) *s3.Client {
	_, localS3 := lookup("AWS_ENDPOINT_URL_S3")
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = localS3 })
}

// DefaultInlineLimit keeps an inventory inline up to 64 KiB, a quarter of the payload limit, which
// leaves room for the plan, the statuses and the failure lists beside it.
const DefaultInlineLimit = 64 << 10

// Store saves and loads inventories. A nil Store, or one without a bucket, keeps everything inline.
type Store struct {
	S3          S3
	Bucket      string
	InlineLimit int
}

// Save returns the inventory to put in the state: itself when it is small, else a reference.
func (s *Store) Save(ctx context.Context, execution string, inv rotation.Inventory) (rotation.Inventory, error) {
	inv.Counts = rotation.CountOf(inv)
	doc, err := json.Marshal(inv)
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("encoding the inventory: %w", err)
	}
	limit := DefaultInlineLimit
	if s != nil && s.InlineLimit > 0 {
		limit = s.InlineLimit
	}
	if s == nil || s.Bucket == "" || len(doc) <= limit {
		return inv, nil
	}
	if execution == "" {
		execution = "no-execution"
	}
	key := fmt.Sprintf("inventories/%s/%s.json", execution, inv.WorkspaceID)
	if _, err := s.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(doc), ContentType: aws.String("application/json")}); err != nil {
		return rotation.Inventory{}, fmt.Errorf("storing the inventory of workspace %s (%d bytes) in s3://%s/%s: %w", inv.WorkspaceID, len(doc), s.Bucket, key, err)
	}
	return rotation.Inventory{WorkspaceID: inv.WorkspaceID, TakenAt: inv.TakenAt, Counts: inv.Counts, Ref: "s3://" + s.Bucket + "/" + key}, nil
}

// Load returns the whole inventory, reading it from S3 when the state holds a reference.
func (s *Store) Load(ctx context.Context, inv rotation.Inventory) (rotation.Inventory, error) {
	if inv.Ref == "" {
		return inv, nil
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(inv.Ref, "s3://"), "/")
	if !ok || !strings.HasPrefix(inv.Ref, "s3://") {
		return rotation.Inventory{}, taskerr.Errorf[taskerr.InvalidInput]("inventory.ref %q is not an s3:// URI", inv.Ref)
	}
	if s == nil || s.S3 == nil {
		return rotation.Inventory{}, taskerr.Errorf[taskerr.InvalidInput]("the inventory is stored at %s but this function has no INVENTORY_BUCKET configured", inv.Ref)
	}
	out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("reading the inventory at %s: %w", inv.Ref, err)
	}
	defer out.Body.Close()
	doc, err := io.ReadAll(out.Body)
	if err != nil {
		return rotation.Inventory{}, fmt.Errorf("reading the inventory at %s: %w", inv.Ref, err)
	}
	var full rotation.Inventory
	if err := json.Unmarshal(doc, &full); err != nil {
		return rotation.Inventory{}, fmt.Errorf("the inventory at %s is not valid JSON: %w", inv.Ref, err)
	}
	full.Ref = inv.Ref
	return full, nil
}
