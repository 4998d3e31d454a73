// Command rotator-sandbox runs a whole rotation on this machine; see `rotator-sandbox --help`.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/rig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := rig.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
