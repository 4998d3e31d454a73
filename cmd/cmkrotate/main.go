// Command cmkrotate is the operator's CLI for the rotation state machine (internal/operator).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/cmk-rotator/databricks-cmk-rotator/internal/dbclient"
	"github.com/cmk-rotator/databricks-cmk-rotator/internal/operator"
)

func main() {
	// Interrupting a watch ends the watch, never the execution.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := operator.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv, newSFN, newKeySources)
	stop()
	os.Exit(code)
}

// newSFN builds the client from the standard chain: AWS_PROFILE, AWS_REGION, and
// AWS_ENDPOINT_URL_SFN for a local endpoint.
func newSFN(ctx context.Context) (*sfn.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	return sfn.NewFromConfig(cfg), nil
}

// newKeySources builds the Databricks account client from the DATABRICKS_* variables (the secret
// from Secrets Manager when DATABRICKS_SECRET_ARN is set) and the KMS client, for cmkrotate keys.
func newKeySources(ctx context.Context) (operator.KeySources, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return operator.KeySources{}, err
	}
	account, _, err := dbclient.AccountFromEnv(ctx, os.LookupEnv, cfg)
	if err != nil {
		return operator.KeySources{}, err
	}
	return operator.KeySources{Account: account, Aliases: kms.NewFromConfig(cfg)}, nil
}
