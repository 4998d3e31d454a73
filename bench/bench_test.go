//go:build bench

package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmk-rotator/databricks-cmk-rotator/emulation/sandbox"
)

var (
	resultsPath = flag.String("results", "", "write the figures and the machine they were measured on to this Markdown file")
	partial     = flag.Bool("partial", false, "write -results even when -test.run selected only some benchmarks")
)

// TestBench runs every benchmark in turn; `-run Bench/<name>` runs one of them. The figures are
// written to -results only when every benchmark ran, so a partial run never replaces the record.
func TestBench(t *testing.T) {
	rep := &report{started: time.Now()}
	stopSampling := rep.sampleLoad(10 * time.Second)
	if at, err := strconv.ParseInt(os.Getenv("BENCH_STARTED_AT"), 10, 64); err == nil {
		rep.makeStarted = time.Unix(at, 0)
	}
	env := newEnvironment(t)
	all := true
	for _, b := range []struct {
		name string
		run  func(*testing.T, *environment, *report)
	}{
		{"stop_start", benchStopStart},
		{"status_checks", benchStatusChecks},
		{"downtime_and_transitions", benchDowntimeAndTransitions},
		{"downtime_p95", benchDowntimeP95},
		{"binaries", benchBinaries},
		{"sdk_weight", benchSDKWeight},
		{"max_rss", benchMaxRSS},
		{"large_workspace", benchLargeWorkspace},
		{"many_workspaces", benchManyWorkspaces},
		{"history_per_workspace", benchHistoryPerWorkspace},
		{"workspaces_200", benchWorkspaces200},
	} {
		ran := t.Run(b.name, func(t *testing.T) {
			started := time.Now()
			b.run(t, env, rep)
			rep.took(b.name, time.Since(started))
		})
		all = all && ran
	}
	stopSampling()
	if *resultsPath == "" {
		return
	}
	if !matchesAll() && !*partial {
		t.Logf("not writing %s: only part of the benchmarks ran", *resultsPath)
		return
	}
	require.NoError(t, rep.write(*resultsPath, all))
	fmt.Printf("BENCH make_bench_runtime_s %.0f s\n", rep.sinceMakeStarted().Seconds())
}

// matchesAll tells whether -test.run selected every benchmark.
func matchesAll() bool {
	f := flag.Lookup("test.run")
	return f == nil || f.Value.String() == "" || f.Value.String() == "." || f.Value.String() == "^TestBench$" || f.Value.String() == "TestBench"
}

// environment is where the benchmarks find the repository, its tools and the built functions.
type environment struct {
	root     string
	tools    sandbox.Tools
	localDir string // bootstraps for this machine (make build-local)
	armDir   string // stripped linux/arm64 bootstraps (make build)
	goCmd    string
	modfile  string // the go.mod the Makefile builds the functions with (LAMBDA_MODFILE)
}

func newEnvironment(t *testing.T) *environment {
	root, err := sandbox.RepoRoot()
	require.NoError(t, err)
	tools, err := sandbox.FindTools(root)
	require.NoError(t, err, "make bench installs the tools")
	e := &environment{root: root, tools: tools, goCmd: "go",
		localDir: filepath.Join(root, ".build", "local"), armDir: filepath.Join(root, ".build", "lambda")}
	if d := os.Getenv("ROTATOR_BUILD_DIR"); d != "" {
		e.localDir = d
	}
	if d := os.Getenv("ROTATOR_LAMBDA_DIR"); d != "" {
		e.armDir = d
	}
	if g := os.Getenv("GO"); g != "" {
		e.goCmd = g
	}
	e.modfile = filepath.Join(root, ".build", "sdk", "go.mod")
	if m := os.Getenv("LAMBDA_MODFILE"); m != "" {
		e.modfile = m
	}
	_, err = os.Stat(filepath.Join(e.localDir, "ValidateFunction", "bootstrap"))
	require.NoError(t, err, "run `make build-local` first")
	return e
}

// goal is what a figure should reach; the zero goal means the figure is informational.
type goal struct {
	label string
	check func(v float64) bool
}

func atMost(limit float64) goal {
	return goal{"≤ " + strconv.FormatFloat(limit, 'f', -1, 64), func(v float64) bool { return v <= limit }}
}

func atLeast(limit float64) goal {
	return goal{"≥ " + strconv.FormatFloat(limit, 'f', -1, 64), func(v float64) bool { return v >= limit }}
}

// capped names what caps an informational figure.
func capped(label string) goal { return goal{label: label} }

// judged is a goal stated in words, whose verdict the benchmark decides.
func judged(label string, met bool) goal {
	return goal{label, func(float64) bool { return met }}
}

func (g goal) String() string { return g.label }

func (g goal) met(v float64) string {
	switch {
	case g.check == nil:
		return ""
	case g.check(v):
		return "yes"
	}
	return "**no**"
}

type figure struct {
	name  string
	value float64
	unit  string
	prec  int
	goal  goal
}

// report collects the figures, in the order they were measured, and the notes that explain them.
type report struct {
	mu          sync.Mutex
	started     time.Time
	makeStarted time.Time
	figures     []figure
	sections    []section
	durations   []string
	loads       []float64 // the 1-minute load average, sampled during the run
}

// sampleLoad records the 1-minute load average until the returned function is called: the
// machine is shared, and a busy neighbour slows what is measured here.
func (r *report) sampleLoad(every time.Duration) func() {
	done := make(chan struct{})
	sample := func() {
		raw, err := os.ReadFile("/proc/loadavg")
		if err != nil {
			return
		}
		if v, err := strconv.ParseFloat(strings.Fields(string(raw))[0], 64); err == nil {
			r.mu.Lock()
			r.loads = append(r.loads, v)
			r.mu.Unlock()
		}
	}
	sample()
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() { close(done); sample() }
}

type section struct {
	title string
	lines []string
}

// figure records a figure and prints its BENCH line.
func (r *report) figure(name string, value float64, unit string, prec int, g goal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.figures = append(r.figures, figure{name, value, unit, prec, g})
	fmt.Printf("BENCH %s %s %s\n", name, strconv.FormatFloat(value, 'f', prec, 64), unit)
}

// note adds a paragraph (or table rows) to a section of RESULTS.md.
func (r *report) note(title, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := fmt.Sprintf(format, args...)
	for i := range r.sections {
		if r.sections[i].title == title {
			r.sections[i].lines = append(r.sections[i].lines, line)
			return
		}
	}
	r.sections = append(r.sections, section{title, []string{line}})
}

func (r *report) took(name string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.durations = append(r.durations, fmt.Sprintf("%s %.0f s", name, d.Seconds()))
}

func (r *report) sinceMakeStarted() time.Duration {
	if r.makeStarted.IsZero() {
		return time.Since(r.started)
	}
	return time.Since(r.makeStarted)
}

func (r *report) write(path string, allPassed bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("# Benchmark results\n\n")
	b.WriteString("Written by `make bench` (bench/*_test.go, build tag `bench`); not part of CI. Every figure below is a\n")
	b.WriteString("measurement from the run described here, against the Databricks fake (`emulation/dbfake`) and the local\n")
	b.WriteString("sandbox (`emulation/rig`): real bootstraps under aws-lambda-rie, the real ASL in aws-local-stepfunctions.\n\n")
	fmt.Fprintf(&b, "| machine | |\n|---|---|\n")
	fmt.Fprintf(&b, "| nproc | %d |\n", runtime.NumCPU())
	fmt.Fprintf(&b, "| CPU | %s |\n", cpuModel())
	fmt.Fprintf(&b, "| memory | %s |\n", memTotal())
	fmt.Fprintf(&b, "| go | %s %s/%s |\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "| date | %s |\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	if len(r.loads) > 0 {
		fmt.Fprintf(&b, "| 1-min load average during the benchmarks | %.2f at the start, %.2f at most, %.2f at the end (%d samples; the machine is shared, the benchmarks themselves mostly wait) |\n",
			r.loads[0], slices.Max(r.loads), r.loads[len(r.loads)-1], len(r.loads))
	}
	if !r.makeStarted.IsZero() {
		fmt.Fprintf(&b, "| `make bench` runtime | %.0f s (%.1f min): tools and builds %.0f s, benchmarks %.0f s (%s) |\n",
			time.Since(r.makeStarted).Seconds(), time.Since(r.makeStarted).Minutes(), r.started.Sub(r.makeStarted).Seconds(),
			time.Since(r.started).Seconds(), strings.Join(r.durations, ", "))
	}
	if !allPassed {
		b.WriteString("\n**Some benchmarks failed in this run; their figures are missing or partial.**\n")
	}
	b.WriteString("\n## Figures\n\n| figure | value | unit | goal | met? |\n|---|---:|---|---|---|\n")
	var missed []string
	for _, f := range r.figures {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", f.name, strconv.FormatFloat(f.value, 'f', f.prec, 64), f.unit, f.goal, f.goal.met(f.value))
		if f.goal.check != nil && !f.goal.check(f.value) {
			missed = append(missed, fmt.Sprintf("`%s` (%s %s, goal %s)", f.name, strconv.FormatFloat(f.value, 'f', f.prec, 64), f.unit, f.goal))
		}
	}
	if len(missed) == 0 {
		b.WriteString("\nEvery goal was met.\n")
	} else {
		fmt.Fprintf(&b, "\n**Goals not met (%d):** %s. The sections below say what stands in the way.\n", len(missed), strings.Join(missed, ", "))
	}
	for _, s := range r.sections {
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		inTable := false
		for _, l := range s.lines {
			row := strings.HasPrefix(l, "|")
			if inTable && !row {
				b.WriteString("\n") // a table ends at a blank line
			}
			b.WriteString(l + "\n")
			if !row {
				b.WriteString("\n")
			}
			inTable = row
		}
	}
	return os.WriteFile(path, []byte(strings.ReplaceAll(b.String(), "\n\n\n", "\n\n")), 0o644)
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	return "unknown"
}
