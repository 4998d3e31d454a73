package keypolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// document is the part of an IAM policy document that Check reads. Every element that IAM lets be
// "a string or a list" is kept raw and read by stringList, so that one odd element yields a precise
// reason instead of a failed decode of the whole policy.
type document struct {
	Statement json.RawMessage `json:"Statement"`
}

type statement struct {
	Sid          json.RawMessage `json:"Sid"`
	Effect       string          `json:"Effect"`
	Principal    json.RawMessage `json:"Principal"`
	NotPrincipal json.RawMessage `json:"NotPrincipal"`
	Action       json.RawMessage `json:"Action"`
	NotAction    json.RawMessage `json:"NotAction"`
	Resource     json.RawMessage `json:"Resource"`
	NotResource  json.RawMessage `json:"NotResource"`
	Condition    json.RawMessage `json:"Condition"`
}

// parsedStatement is a statement with its elements decoded. A nil slice means the element is absent.
type parsedStatement struct {
	label        string
	effect       string
	principal    principalSet
	notPrincipal *principalSet
	action       []string
	notAction    []string
	resource     []string
	notResource  []string
	// conditions maps operator -> condition key -> values, as written.
	conditions map[string]map[string][]string
}

// principalSet is a Principal element: "*" or the AWS entries of {"AWS": ...}. Service, Federated
// and CanonicalUser principals are never the Databricks control plane, so they are not kept.
type principalSet struct {
	present  bool
	wildcard bool
	aws      []string
}

func parseDocument(policyJSON string) ([]parsedStatement, error) {
	raw := []byte(policyJSON)
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		return nil, fmt.Errorf("key policy is not valid JSON: %v", err)
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("key policy is not a JSON object")
	}
	var doc document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("key policy is not a policy document: %v", err)
	}
	var rawStatements []json.RawMessage
	trimmed := bytes.TrimSpace(doc.Statement)
	switch {
	case len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")):
		return nil, fmt.Errorf("key policy has no Statement")
	case trimmed[0] == '{':
		// IAM accepts a single statement object in place of the array.
		rawStatements = []json.RawMessage{trimmed}
	default:
		if err := json.Unmarshal(trimmed, &rawStatements); err != nil {
			return nil, fmt.Errorf("key policy Statement is neither an object nor a list: %v", err)
		}
	}
	out := make([]parsedStatement, 0, len(rawStatements))
	for i, rs := range rawStatements {
		ps, err := parseStatement(i, rs)
		if err != nil {
			return nil, err
		}
		out = append(out, ps)
	}
	return out, nil
}

func parseStatement(index int, raw json.RawMessage) (parsedStatement, error) {
	label := fmt.Sprintf("#%d", index+1)
	var st statement
	if err := json.Unmarshal(raw, &st); err != nil {
		return parsedStatement{}, fmt.Errorf("key policy statement %s is not a valid statement: %v", label, err)
	}
	if sid, err := stringList(st.Sid); err == nil && len(sid) == 1 && sid[0] != "" {
		label = strconv.Quote(sid[0])
	}
	ps := parsedStatement{label: label, effect: st.Effect}
	var err error
	if ps.principal, err = parsePrincipal(st.Principal); err != nil {
		return ps, fmt.Errorf("key policy statement %s has an invalid Principal: %v", label, err)
	}
	if len(st.NotPrincipal) > 0 {
		np, err := parsePrincipal(st.NotPrincipal)
		if err != nil {
			return ps, fmt.Errorf("key policy statement %s has an invalid NotPrincipal: %v", label, err)
		}
		ps.notPrincipal = &np
	}
	fields := []struct {
		name string
		raw  json.RawMessage
		dst  *[]string
	}{
		{"Action", st.Action, &ps.action},
		{"NotAction", st.NotAction, &ps.notAction},
		{"Resource", st.Resource, &ps.resource},
		{"NotResource", st.NotResource, &ps.notResource},
	}
	for _, f := range fields {
		if *f.dst, err = stringList(f.raw); err != nil {
			return ps, fmt.Errorf("key policy statement %s has an invalid %s: %v", label, f.name, err)
		}
	}
	if ps.conditions, err = parseCondition(st.Condition); err != nil {
		return ps, fmt.Errorf("key policy statement %s has an invalid Condition: %v", label, err)
	}
	return ps, nil
}

func parsePrincipal(raw json.RawMessage) (principalSet, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return principalSet{}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return principalSet{}, err
		}
		if s != "*" {
			return principalSet{}, fmt.Errorf("a string Principal must be \"*\", got %q", s)
		}
		return principalSet{present: true, wildcard: true}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return principalSet{}, err
	}
	ps := principalSet{present: true}
	for k, v := range m {
		if k != "AWS" {
			continue
		}
		vals, err := stringList(v)
		if err != nil {
			return principalSet{}, fmt.Errorf("AWS: %v", err)
		}
		for _, a := range vals {
			if a == "*" {
				ps.wildcard = true
			}
		}
		ps.aws = append(ps.aws, vals...)
	}
	return ps, nil
}

// parseCondition reads {"Operator": {"key": value-or-list}}.
func parseCondition(raw json.RawMessage) (map[string]map[string][]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var ops map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ops); err != nil {
		return nil, err
	}
	out := make(map[string]map[string][]string, len(ops))
	for op, keys := range ops {
		out[op] = make(map[string][]string, len(keys))
		for k, v := range keys {
			vals, err := stringList(v)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %v", op, k, err)
			}
			out[op][k] = vals
		}
	}
	return out, nil
}

// stringList reads an element that IAM allows as a scalar or a list of scalars. Booleans and numbers
// are kept in their JSON spelling (conditions such as kms:GrantIsForAWSResource use them). It
// returns nil for an absent element and an empty, non-nil slice for [].
func stringList(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] != '[' {
		s, err := scalar(raw)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := scalar(bytes.TrimSpace(it))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func scalar(raw json.RawMessage) (string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch v.(type) {
	case bool, float64:
		return string(raw), nil
	}
	return "", fmt.Errorf("expected a string or a list of strings, got %s", truncate(string(raw), 40))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
