package sandbox

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago. Another process can take
// it before the caller binds it; the starters below retry when that happens.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// emulatorPortRange lies below Linux's ephemeral range (32768-60999): a port picked with ":0" comes
// from that range, which every outgoing connection on the machine also draws from, and the
// emulator binds its Runtime API port only at the first invocation, long after the pick. Ports
// from here collide only with other explicit picks.
const (
	emulatorPortLow  = 20000
	emulatorPortHigh = 32000
)

// EmulatorPort returns a port of 127.0.0.1 outside the ephemeral range that is free right now.
func EmulatorPort() (int, error) {
	for range 200 {
		port := emulatorPortLow + rand.IntN(emulatorPortHigh-emulatorPortLow)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		return port, nil
	}
	return FreePort()
}

// baseEnv is the part of the parent's environment a child may see: enough to find programs and a
// home and temp dir, and nothing else (no AWS profile, no credentials, no proxy settings).
func baseEnv() map[string]string {
	env := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// lineBuffer collects the lines a child writes, and copies them to an optional live writer.
type lineBuffer struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	tee     io.Writer
	prefix  string
	notify  func(line string)
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.addLocked(string(bytes.TrimRight(b.partial[:i], "\r")))
		b.partial = b.partial[i+1:]
	}
	return len(p), nil
}

func (b *lineBuffer) addLocked(line string) {
	b.lines = append(b.lines, line)
	if b.tee != nil {
		_, _ = io.WriteString(b.tee, b.prefix+line+"\n")
	}
	if b.notify != nil {
		b.notify(line)
	}
}

// Lines returns the complete lines so far, plus a trailing partial line if any.
func (b *lineBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]string(nil), b.lines...)
	if len(b.partial) > 0 {
		out = append(out, string(b.partial))
	}
	return out
}

func (b *lineBuffer) tail(n int) string {
	lines := b.Lines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// process is a started child with its own process group, so stopping it also stops what it
// spawned (aws-lambda-rie runs the bootstrap as its child).
type process struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error // set before exited is closed
	stopOnce sync.Once
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	setProcessGroup(cmd)
	// Bounds Wait when a grandchild still holds the output pipes after the child is gone.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		// Whatever ended the child, end what it spawned too. While any of them lives the group id
		// stays in use, so it cannot have been handed to another process yet.
		signalGroup(cmd, killSignal)
		close(p.exited)
	}()
	return p, nil
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop asks the process group to terminate and kills it if it is still there after grace.
// Signals are only sent while the child is alive, so its group id is still its own.
func (p *process) stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		if p.hasExited() {
			return
		}
		signalGroup(p.cmd, terminateSignal)
		select {
		case <-p.exited:
		case <-time.After(grace):
			signalGroup(p.cmd, killSignal)
		}
	})
	<-p.exited
}
