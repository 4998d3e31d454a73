package awsfake

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The S3 subset the rotator uses to keep large inventories by reference: PutObject and GetObject
// with path-style addressing (http://host/<bucket>/<key>). S3 is a REST/XML protocol, so these
// requests carry no X-Amz-Target; buckets must be created first, as the stack creates its bucket.

type s3State struct {
	buckets map[string]map[string][]byte
}

// CreateBucket declares a bucket.
func (s *Server) CreateBucket(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s3.buckets == nil {
		s.s3.buckets = map[string]map[string][]byte{}
	}
	if s.s3.buckets[name] == nil {
		s.s3.buckets[name] = map[string][]byte{}
	}
}

// Objects returns the keys and sizes of a bucket's objects.
func (s *Server) Objects(bucket string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.s3.buckets[bucket] {
		out[k] = len(v)
	}
	return out
}

// Object returns one object's content.
func (s *Server) Object(bucket, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.s3.buckets[bucket][key]
	return v, ok
}

func (s *Server) isS3(r *http.Request) bool {
	bucket, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.s3.buckets[bucket]
	return ok
}

func s3Error(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, message)
}

func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Target: "s3." + r.Method, Status: status})
		s.mu.Unlock()
	}()
	if key == "" {
		status = http.StatusNotImplemented
		s3Error(w, status, "NotImplemented", "awsfake serves only object PUT and GET")
		return
	}
	switch r.Method {
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			status = http.StatusBadRequest
			s3Error(w, status, "IncompleteBody", err.Error())
			return
		}
		s.mu.Lock()
		s.s3.buckets[bucket][key] = body
		s.mu.Unlock()
		sum := md5.Sum(body)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.WriteHeader(status)
	case http.MethodGet:
		body, ok := s.Object(bucket, key)
		if !ok {
			status = http.StatusNotFound
			s3Error(w, status, "NoSuchKey", "The specified key does not exist.")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body)
	default:
		status = http.StatusNotImplemented
		s3Error(w, status, "NotImplemented", "awsfake serves only object PUT and GET")
	}
}
