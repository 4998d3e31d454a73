package awsfake

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The DynamoDB subset the rotator's workspace lock uses: PutItem, GetItem, DeleteItem and
// TransactWriteItems with condition expressions. Conditions are evaluated and writes applied under
// one mutex, which is the atomicity DynamoDB guarantees per item and per transaction. The expression
// grammar is the small one the lock writes (OR/AND of attribute_exists, attribute_not_exists and
// comparisons); anything else is refused with ValidationException rather than guessed at.
//
// Why not github.com/truora/minidyn (v0.8.2 has an HTTP server with condition expressions and
// TransactWriteItems): its TransactWriteItems stops at the first failed condition and reports None
// for every later item, so the lock could name only the first busy workspace (pinned by
// TestACancelledTransactionGivesOneReasonPerItemInRequestOrder and wslock's
// TestARefusalNamesEveryBusyWorkspaceNotOnlyTheFirst); and its go.mod (testcontainers) would raise
// OpenTelemetry and golang.org/x versions in every Lambda binary, since the module graph is shared.
// A 60-line adapter over its server passed every other test here, in wslock and in rescue.

type attributeValue = map[string]json.RawMessage
type item = map[string]attributeValue

type dynamoState struct {
	tables map[string]*table
}

type table struct {
	hashKey string
	items   map[string]item
}

// CreateTable declares a table with a string partition key, as template.yaml does.
func (s *Server) CreateTable(name, hashKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dynamo.tables == nil {
		s.dynamo.tables = map[string]*table{}
	}
	s.dynamo.tables[name] = &table{hashKey: hashKey, items: map[string]item{}}
}

// Items returns a copy of a table's items, decoded to plain values (S as string, N as string).
func (s *Server) Items(tableName string) []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.dynamo.tables[tableName]
	if t == nil {
		return nil
	}
	var out []map[string]string
	for _, it := range t.items {
		plain := map[string]string{}
		for k, v := range it {
			plain[k] = scalar(v)
		}
		out = append(out, plain)
	}
	return out
}

type conditional struct {
	ConditionExpression       string                    `json:"ConditionExpression"`
	ExpressionAttributeNames  map[string]string         `json:"ExpressionAttributeNames"`
	ExpressionAttributeValues map[string]attributeValue `json:"ExpressionAttributeValues"`
}

type putInput struct {
	TableName string `json:"TableName"`
	Item      item   `json:"Item"`
	conditional
}

type keyInput struct {
	TableName string `json:"TableName"`
	Key       item   `json:"Key"`
	conditional
}

func (s *Server) tableLocked(name string) (*table, *apiError) {
	t := s.dynamo.tables[name]
	if t == nil {
		return nil, errBadRequest("ResourceNotFoundException", "Requested resource not found: Table: %s not found", name)
	}
	return t, nil
}

func (t *table) keyOf(it item) (string, *apiError) {
	v, ok := it[t.hashKey]
	if !ok {
		return "", errBadRequest("ValidationException", "One of the required keys was not given a value: %s", t.hashKey)
	}
	return scalar(v), nil
}

func conditionFailed() *apiError {
	return errBadRequest("ConditionalCheckFailedException", "The conditional request failed")
}

// itemLocked finds the table and the item key a request names; s.mu must be held.
func (s *Server) itemLocked(tableName string, keyItem item) (*table, string, *apiError) {
	t, aerr := s.tableLocked(tableName)
	if aerr != nil {
		return nil, "", aerr
	}
	key, aerr := t.keyOf(keyItem)
	if aerr != nil {
		return nil, "", aerr
	}
	return t, key, nil
}

// conditionalWrite applies write to an item when the request's condition holds for it, under one
// lock: the atomicity DynamoDB guarantees for a single-item write.
func (s *Server) conditionalWrite(tableName string, keyItem item, cond conditional, write func(t *table, key string)) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, key, aerr := s.itemLocked(tableName, keyItem)
	if aerr != nil {
		return nil, aerr
	}
	ok, aerr := evaluate(cond, t.items[key])
	if aerr != nil {
		return nil, aerr
	}
	if !ok {
		return nil, conditionFailed()
	}
	write(t, key)
	return map[string]any{}, nil
}

func (s *Server) putItem(body []byte) (any, *apiError) {
	var in putInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	return s.conditionalWrite(in.TableName, in.Item, in.conditional, func(t *table, key string) { t.items[key] = in.Item })
}

func (s *Server) getItem(body []byte) (any, *apiError) {
	var in keyInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, key, aerr := s.itemLocked(in.TableName, in.Key)
	if aerr != nil {
		return nil, aerr
	}
	if it, ok := t.items[key]; ok {
		return map[string]any{"Item": it}, nil
	}
	return map[string]any{}, nil
}

func (s *Server) deleteItem(body []byte) (any, *apiError) {
	var in keyInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	return s.conditionalWrite(in.TableName, in.Key, in.conditional, func(t *table, key string) { delete(t.items, key) })
}

func (s *Server) transactWriteItems(body []byte) (any, *apiError) {
	var in struct {
		TransactItems []struct {
			Put            *putInput `json:"Put"`
			Delete         *keyInput `json:"Delete"`
			ConditionCheck *keyInput `json:"ConditionCheck"`
		} `json:"TransactItems"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if len(in.TransactItems) == 0 || len(in.TransactItems) > 100 {
		return nil, errBadRequest("ValidationException", "TransactItems must have between 1 and 100 items")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type write struct {
		t      *table
		key    string
		put    item
		delete bool
	}
	var writes []write
	reasons := make([]map[string]string, len(in.TransactItems))
	failed := false
	seen := map[string]bool{}
	for i, ti := range in.TransactItems {
		var (
			tableName string
			keyItem   item
			cond      conditional
			w         write
		)
		switch {
		case ti.Put != nil:
			tableName, keyItem, cond, w.put = ti.Put.TableName, ti.Put.Item, ti.Put.conditional, ti.Put.Item
		case ti.Delete != nil:
			tableName, keyItem, cond, w.delete = ti.Delete.TableName, ti.Delete.Key, ti.Delete.conditional, true
		case ti.ConditionCheck != nil:
			tableName, keyItem, cond = ti.ConditionCheck.TableName, ti.ConditionCheck.Key, ti.ConditionCheck.conditional
		default:
			return nil, errBadRequest("ValidationException", "TransactItems[%d] has no Put, Delete or ConditionCheck", i)
		}
		t, key, aerr := s.itemLocked(tableName, keyItem)
		if aerr != nil {
			return nil, aerr
		}
		if seen[tableName+"\x00"+key] {
			return nil, errBadRequest("ValidationException", "Transaction request cannot include multiple operations on one item")
		}
		seen[tableName+"\x00"+key] = true
		ok, aerr := evaluate(cond, t.items[key])
		if aerr != nil {
			return nil, aerr
		}
		reasons[i] = map[string]string{"Code": "None"}
		if !ok {
			failed = true
			reasons[i] = map[string]string{"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
		}
		w.t, w.key = t, key
		if w.put != nil || w.delete {
			writes = append(writes, w)
		}
	}
	if failed {
		codes := make([]string, len(reasons))
		for i, r := range reasons {
			codes[i] = r["Code"]
		}
		aerr := errBadRequest("TransactionCanceledException", "Transaction cancelled, please refer cancellation reasons for specific reasons [%s]", strings.Join(codes, ", "))
		aerr.extra = map[string]any{"CancellationReasons": reasons}
		return nil, aerr
	}
	for _, w := range writes {
		if w.delete {
			delete(w.t.items, w.key)
		} else {
			w.t.items[w.key] = w.put
		}
	}
	return map[string]any{}, nil
}

// scalar returns the value of an S or N attribute as a string ("" for other types).
func scalar(v attributeValue) string {
	for _, typ := range []string{"S", "N"} {
		if raw, ok := v[typ]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return s
			}
		}
	}
	return ""
}

var conditionToken = regexp.MustCompile(`\s*(attribute_not_exists|attribute_exists|\(|\)|<>|<=|>=|=|<|>|OR|AND|#[A-Za-z0-9_]+|:[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*)`)

// evaluate reports whether the condition holds for the current item (nil when absent).
func evaluate(c conditional, current item) (bool, *apiError) {
	expr := strings.TrimSpace(c.ConditionExpression)
	if expr == "" {
		return true, nil
	}
	var tokens []string
	for rest := expr; strings.TrimSpace(rest) != ""; {
		m := conditionToken.FindStringSubmatchIndex(rest)
		if m == nil || m[0] != 0 {
			return false, errBadRequest("ValidationException", "awsfake cannot parse ConditionExpression %q at %q", expr, rest)
		}
		tokens = append(tokens, rest[m[2]:m[3]])
		rest = rest[m[1]:]
	}
	p := &condParser{tokens: tokens, c: c, item: current}
	v, err := p.or()
	if err == nil && p.pos != len(tokens) {
		err = fmt.Errorf("unexpected %q", tokens[p.pos])
	}
	if err != nil {
		return false, errBadRequest("ValidationException", "Invalid ConditionExpression %q: %v", expr, err)
	}
	return v, nil
}

type condParser struct {
	tokens []string
	pos    int
	c      conditional
	item   item
}

func (p *condParser) peek() string {
	if p.pos < len(p.tokens) {
		return p.tokens[p.pos]
	}
	return ""
}

func (p *condParser) next() string { t := p.peek(); p.pos++; return t }

func (p *condParser) or() (bool, error) {
	v, err := p.and()
	for err == nil && p.peek() == "OR" {
		p.next()
		var r bool
		r, err = p.and()
		v = v || r
	}
	return v, err
}

func (p *condParser) and() (bool, error) {
	v, err := p.term()
	for err == nil && p.peek() == "AND" {
		p.next()
		var r bool
		r, err = p.term()
		v = v && r
	}
	return v, err
}

func (p *condParser) name(tok string) (string, error) {
	if strings.HasPrefix(tok, "#") {
		n, ok := p.c.ExpressionAttributeNames[tok]
		if !ok {
			return "", fmt.Errorf("an expression attribute name used in the document path is not defined: %s", tok)
		}
		return n, nil
	}
	if tok == "" || strings.HasPrefix(tok, ":") {
		return "", fmt.Errorf("expected an attribute name, got %q", tok)
	}
	return tok, nil
}

func (p *condParser) term() (bool, error) {
	switch tok := p.next(); tok {
	case "(":
		v, err := p.or()
		if err == nil && p.next() != ")" {
			err = fmt.Errorf("missing )")
		}
		return v, err
	case "attribute_exists", "attribute_not_exists":
		if p.next() != "(" {
			return false, fmt.Errorf("%s needs (", tok)
		}
		n, err := p.name(p.next())
		if err != nil {
			return false, err
		}
		if p.next() != ")" {
			return false, fmt.Errorf("missing )")
		}
		_, exists := p.item[n]
		return exists == (tok == "attribute_exists"), nil
	default:
		left, lok, err := p.operand(tok)
		if err != nil {
			return false, err
		}
		op := p.next()
		right, rok, err := p.operand(p.next())
		if err != nil {
			return false, err
		}
		if !lok || !rok {
			return false, nil // comparisons with a missing attribute are false in DynamoDB
		}
		return compare(left, op, right)
	}
}

// operand returns an attribute's or a value's typed scalar; ok is false for a missing attribute.
func (p *condParser) operand(tok string) (attributeValue, bool, error) {
	if strings.HasPrefix(tok, ":") {
		v, ok := p.c.ExpressionAttributeValues[tok]
		if !ok {
			return nil, false, fmt.Errorf("an expression attribute value used in expression is not defined: %s", tok)
		}
		return v, true, nil
	}
	n, err := p.name(tok)
	if err != nil {
		return nil, false, err
	}
	v, ok := p.item[n]
	return v, ok, nil
}

func compare(a attributeValue, op string, b attributeValue) (bool, error) {
	_, aNum := a["N"]
	_, bNum := b["N"]
	var c int
	switch {
	case aNum && bNum:
		x, err1 := strconv.ParseFloat(scalar(a), 64)
		y, err2 := strconv.ParseFloat(scalar(b), 64)
		if err1 != nil || err2 != nil {
			return false, fmt.Errorf("bad number")
		}
		switch {
		case x < y:
			c = -1
		case x > y:
			c = 1
		}
	case !aNum && !bNum:
		c = strings.Compare(scalar(a), scalar(b))
	default:
		return false, nil // different types never compare equal or ordered
	}
	switch op {
	case "=":
		return c == 0, nil
	case "<>":
		return c != 0, nil
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("unknown comparator %q", op)
}
