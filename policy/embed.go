// Package policy carries the repository's rotation policy document (rotation-policy.yaml) into the
// functions that enforce it; internal/policy parses and evaluates it.
package policy

import _ "embed"

// Document is rotation-policy.yaml as committed.
//
//go:embed rotation-policy.yaml
var Document []byte
