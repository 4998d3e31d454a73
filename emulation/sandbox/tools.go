package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Tools are the programs the sandbox runs, at their places in the repository.
type Tools struct {
	Node     string // node_modules/.bin/node (npm package node@22)
	Engine   string // emulation/sandbox/engine.mjs
	Emulator string // .tools/bin/aws-lambda-rie
	LocalKMS string // .tools/bin/local-kms
}

// FindTools locates the tools under the repository root and names every one that is missing.
func FindTools(repoRoot string) (Tools, error) {
	t := Tools{
		Node:     filepath.Join(repoRoot, "node_modules", ".bin", "node"),
		Engine:   filepath.Join(repoRoot, "emulation", "sandbox", "engine.mjs"),
		Emulator: filepath.Join(repoRoot, ".tools", "bin", "aws-lambda-rie"),
		LocalKMS: filepath.Join(repoRoot, ".tools", "bin", "local-kms"),
	}
	var missing []string
	for _, path := range []string{t.Node, t.Engine, t.Emulator, t.LocalKMS,
		filepath.Join(repoRoot, "node_modules", "aws-local-stepfunctions", "package.json")} {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, path)
		}
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("sandbox tools missing (run `make tools`): %s", strings.Join(missing, ", "))
	}
	return t, nil
}

// RepoRoot walks up from the working directory to the directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("sandbox: no go.mod above the working directory")
		}
		dir = parent
	}
}
