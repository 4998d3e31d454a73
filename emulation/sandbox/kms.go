package sandbox

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// localKMSStarted is the line local-kms logs once it listens; with PORT=0 it names the port the
// kernel chose, which avoids the race of picking a free port first.
var localKMSStarted = regexp.MustCompile(`Local KMS started on 0\.0\.0\.0:(\d+)`)

// StartLocalKMS runs local-kms (github.com/nsmithuk/local-kms) and waits until it answers KMS
// requests. It keeps its keys in dataDir (a fresh temp dir, removed by stop, when dataDir is
// empty); a seed.yaml placed in dataDir seeds it. The endpoint returned is on 127.0.0.1, but note
// that local-kms itself listens on 0.0.0.0 and has no option to bind otherwise.
// stop terminates it; it is also stopped when ctx is cancelled.
func StartLocalKMS(ctx context.Context, binPath, dataDir, region, account string) (endpoint string, stop func(), err error) {
	if _, err := os.Stat(binPath); err != nil {
		return "", nil, fmt.Errorf("local-kms binary: %w (run `make tools`)", err)
	}
	removeDir := false
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "local-kms-"); err != nil {
			return "", nil, fmt.Errorf("local-kms data dir: %w", err)
		}
		removeDir = true
	}
	env := baseEnv()
	env["PORT"] = "0"
	env["KMS_REGION"] = region
	env["KMS_ACCOUNT_ID"] = account
	env["KMS_DATA_PATH"] = dataDir
	env["KMS_SEED_PATH"] = filepath.Join(dataDir, "seed.yaml")

	ports := make(chan string, 1)
	logs := &lineBuffer{notify: func(line string) {
		if m := localKMSStarted.FindStringSubmatch(line); m != nil {
			select {
			case ports <- m[1]:
			default:
			}
		}
	}}
	cmd := exec.Command(binPath)
	cmd.Env = envList(env)
	cmd.Stdout, cmd.Stderr = logs, logs
	proc, err := startProcess(cmd)
	if err != nil {
		return "", nil, fmt.Errorf("start local-kms: %w", err)
	}
	stopCtx, cancelWatch := context.WithCancel(context.Background())
	stop = func() {
		cancelWatch()
		proc.stop(2 * time.Second)
		if removeDir {
			_ = os.RemoveAll(dataDir)
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-stopCtx.Done():
		}
	}()

	fail := func(err error) (string, func(), error) {
		stop()
		return "", nil, fmt.Errorf("%w\nlocal-kms log:\n%s", err, logs.tail(20))
	}
	var port string
	select {
	case port = <-ports:
	case <-proc.exited:
		return fail(fmt.Errorf("local-kms exited before listening: %v", proc.err))
	case <-time.After(10 * time.Second):
		return fail(fmt.Errorf("local-kms did not report its port within 10s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	endpoint = "http://127.0.0.1:" + port
	if err := waitUntil(ctx, 10*time.Second, proc, func() bool { return kmsAnswers(endpoint) }); err != nil {
		return fail(fmt.Errorf("local-kms at %s: %w", endpoint, err))
	}
	return endpoint, stop, nil
}

func kmsAnswers(endpoint string) bool {
	req, err := http.NewRequest(http.MethodPost, endpoint+"/", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	req.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitUntil polls ready until it holds, the process exits, ctx ends or limit passes.
func waitUntil(ctx context.Context, limit time.Duration, proc *process, ready func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if ready() {
			return nil
		}
		if proc.hasExited() {
			return fmt.Errorf("process exited: %v", proc.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
