package awsfake

import (
	"io"
	"net/http"
	"strings"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3 is served by gofakes3 (a maintained S3 emulator: REST/XML, path-style addressing, real error
// codes such as NoSuchKey and NoSuchBucket, Content-MD5 and aws-chunked bodies as the SDK sends
// them) over its in-memory backend, instead of a hand-written subset. The rotator keeps large
// inventories there by reference (PutObject, GetObject). S3 requests carry no X-Amz-Target, which
// is how ServeHTTP tells them from the JSON-protocol services; buckets must be created first, as
// the stack creates its bucket.

type s3State struct {
	backend *s3mem.Backend
	handler http.Handler
}

func newS3State() s3State {
	backend := s3mem.New()
	return s3State{backend: backend, handler: gofakes3.New(backend).Server()}
}

// CreateBucket declares a bucket; declaring it again is harmless.
func (s *Server) CreateBucket(name string) {
	if ok, _ := s.s3.backend.BucketExists(name); !ok {
		_ = s.s3.backend.CreateBucket(name)
	}
}

// Objects returns the keys and sizes of a bucket's objects.
func (s *Server) Objects(bucket string) map[string]int {
	out := map[string]int{}
	list, err := s.s3.backend.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		return out
	}
	for _, obj := range list.Contents {
		out[obj.Key] = int(obj.Size)
	}
	return out
}

// Object returns one object's content.
func (s *Server) Object(bucket, key string) ([]byte, bool) {
	obj, err := s.s3.backend.GetObject(bucket, key, nil)
	if err != nil {
		return nil, false
	}
	defer obj.Contents.Close()
	body, err := io.ReadAll(obj.Contents)
	return body, err == nil
}

// isS3 tells an S3 request (no X-Amz-Target, a bucket in the path) from a JSON-protocol one; a
// POST to / without a target stays an unknown operation.
func isS3(r *http.Request) bool {
	bucket, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return r.Header.Get("X-Amz-Target") == "" && bucket != ""
}

func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.s3.handler.ServeHTTP(rec, r)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Target: "s3." + r.Method, Status: rec.status})
	s.mu.Unlock()
}

// statusRecorder keeps the status an S3 answer was sent with, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}
