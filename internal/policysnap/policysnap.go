// Package policysnap keeps the last key policy a rotation validated for each key, so that the key
// guard can put it back when a PutKeyPolicy takes Databricks' grant away from a key in use.
//
// Why a snapshot: KMS keeps no policy history, and CloudTrail's PutKeyPolicy record carries only the
// new policy. The policy Validate read and accepted is the last one known to let Databricks use the
// key; restoring it is what "undo" can mean. Validate writes it (Save) every time it accepts a key,
// so it follows legitimate policy changes made between rotations; a key no rotation validated has
// no snapshot, and the guard then says so instead of guessing.
package policysnap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3 is the bucket surface the store needs.
type S3 interface {
	PutObject(ctx context.Context, params *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, params *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ S3 = (*s3.Client)(nil)

// Prefix is where snapshots live in the bucket (template.yaml grants Validate PutObject and the key
// guard GetObject on it only).
const Prefix = "key-policies/"

// Snapshot is one stored policy.
type Snapshot struct {
	KeyARN      string    `json:"key_arn"`
	Policy      string    `json:"policy"`
	ValidatedAt time.Time `json:"validated_at"`
	Execution   string    `json:"execution,omitempty"`
}

// Store saves and loads snapshots in Bucket.
type Store struct {
	S3     S3
	Bucket string
}

// key is the object key of a key ARN's snapshot: one object per key, overwritten by each validation.
func key(keyARN string) string {
	return Prefix + strings.NewReplacer(":", "/", "/", "_").Replace(strings.ToLower(strings.TrimSpace(keyARN))) + ".json"
}

// Save stores the policy Validate accepted for the key.
func (s *Store) Save(ctx context.Context, snap Snapshot) error {
	doc, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode the key policy snapshot: %w", err)
	}
	_, err = s.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key(snap.KeyARN)),
		Body: bytes.NewReader(doc), ContentType: aws.String("application/json")})
	if err != nil {
		return fmt.Errorf("store the key policy snapshot of %s: %w", snap.KeyARN, err)
	}
	return nil
}

// Load returns the key's snapshot; found is false when no rotation validated the key.
func (s *Store) Load(ctx context.Context, keyARN string) (snap Snapshot, found bool, err error) {
	out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key(keyARN))})
	var missing *s3types.NoSuchKey
	if errors.As(err, &missing) {
		return Snapshot{}, false, nil
	}
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("read the key policy snapshot of %s: %w", keyARN, err)
	}
	defer out.Body.Close()
	doc, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("read the key policy snapshot of %s: %w", keyARN, err)
	}
	if err := json.Unmarshal(doc, &snap); err != nil {
		return Snapshot{}, false, fmt.Errorf("decode the key policy snapshot of %s: %w", keyARN, err)
	}
	return snap, true, nil
}
