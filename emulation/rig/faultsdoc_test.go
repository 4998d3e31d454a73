package rig_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultRows returns the rows of the first table in text that starts with "| fault |".
func faultRows(t *testing.T, text string) []string {
	t.Helper()
	i := strings.Index(text, "| fault |")
	require.GreaterOrEqual(t, i, 0, "no fault table")
	var rows []string
	for _, line := range strings.Split(text[i:], "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		rows = append(rows, line)
	}
	return rows
}

// The fault matrix is written twice (README.md and docs/faults.md): the rows must be the same, and
// every test a row names must exist.
func TestTheFaultMatrixOfTheREADMEAndOfDocsFaultsAgreeAndNameRealTests(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "faults.md"))
	require.NoError(t, err)
	rows := faultRows(t, string(readme))
	assert.Equal(t, rows, faultRows(t, string(doc)), "README.md and docs/faults.md list the same rows")

	var sources strings.Builder
	files, err := filepath.Glob("*_test.go")
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		sources.Write(b)
	}
	name := regexp.MustCompile("`(Test[A-Za-z0-9_]+)")
	for _, row := range rows {
		for _, m := range name.FindAllStringSubmatch(row, -1) {
			assert.True(t, strings.Contains(sources.String(), "func "+m[1]+"("), "the fault matrix names %s, which is no test of emulation/rig", m[1])
		}
	}
}
