// Package wire holds what every function's composition root does the same way: structured logs with
// the Lambda request id, the AWS configuration, and typed settings read from the environment. It
// links no service client, so that each function binary carries only the clients it uses.
package wire

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// Lookup reads one environment variable (os.LookupEnv in main, a map in tests).
type Lookup func(string) (string, bool)

// Logger returns the JSON logger that adds the Lambda request id to every record logged with a context.
func Logger() *slog.Logger { return lambdacontext.NewLogger() }

// AWS loads the default AWS configuration. It honours AWS_ENDPOINT_URL_<SERVICE>, which is how the
// local sandbox points the functions at local-kms and its local AWS endpoint.
func AWS(ctx context.Context) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return cfg, nil
}

// Start is what every function's main does first: the logger and the AWS configuration. A function
// that cannot load its AWS configuration exits with the reason logged, so that Lambda reports an
// init error instead of serving half-configured.
func Start() (context.Context, *slog.Logger, aws.Config) {
	ctx, logger := context.Background(), Logger()
	cfg, err := AWS(ctx)
	exitOnError(logger, "AWS configuration", err)
	return ctx, logger, cfg
}

// Configured returns what a FromEnv/LoadConfig call built, or exits with its error logged: a
// function with a missing or malformed setting must fail at init, where the deploy shows it.
func Configured[T any](built T, err error) T {
	exitOnError(Logger(), "configuration", err)
	return built
}

func exitOnError(logger *slog.Logger, what string, err error) {
	if err != nil {
		logger.Error("cannot start: "+what, "error", err.Error())
		os.Exit(1)
	}
}

// Settings reads typed settings and collects every problem, so one error names them all.
type Settings struct {
	lookup   Lookup
	problems []string
}

// NewSettings reads from lookup.
func NewSettings(lookup Lookup) *Settings { return &Settings{lookup: lookup} }

func (s *Settings) raw(name string) (string, bool) {
	v, ok := s.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// Duration reads a Go duration ("90s", "30m"), or returns def when unset.
func (s *Settings) Duration(name string, def time.Duration) time.Duration {
	v, ok := s.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		s.problems = append(s.problems, fmt.Sprintf("%s must be a positive duration like 30m, got %q", name, v))
		return def
	}
	return d
}

// Int reads a non-negative integer, or returns def when unset.
func (s *Settings) Int(name string, def int) int {
	v, ok := s.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		s.problems = append(s.problems, fmt.Sprintf("%s must be a non-negative integer, got %q", name, v))
		return def
	}
	return n
}

// Bool reads true/false, or returns def when unset.
func (s *Settings) Bool(name string, def bool) bool {
	v, ok := s.raw(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		s.problems = append(s.problems, fmt.Sprintf("%s must be true or false, got %q", name, v))
		return def
	}
	return b
}

// Required reads a string that must be set.
func (s *Settings) Required(name string) string {
	v, ok := s.raw(name)
	if !ok {
		s.problems = append(s.problems, name+" is required")
	}
	return v
}

// Err returns one error naming every problem found, or nil.
func (s *Settings) Err() error {
	if len(s.problems) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %s", strings.Join(s.problems, "; "))
}

// Require reads one required setting, for a function that has no other.
func Require(lookup Lookup, name string) (string, error) {
	s := NewSettings(lookup)
	v := s.Required(name)
	return v, s.Err()
}
