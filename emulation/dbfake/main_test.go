package dbfake

import (
	"os"
	"testing"

	"github.com/databricks/databricks-sdk-go/logger"
)

func TestMain(m *testing.M) {
	// The SDK warns on every client that the fake has no host metadata; that is by design here.
	logger.DefaultLogger = &logger.SimpleLogger{Level: logger.LevelError}
	os.Exit(m.Run())
}
