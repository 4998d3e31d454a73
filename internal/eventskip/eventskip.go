// Package eventskip is what an EventBridge-triggered handler (the key guard, the rescue) returns
// for an event it does not act on. A skip is not a failure: the handler logs it and returns nil,
// so that Lambda does not retry an event that no retry can make actionable; Malformed marks an
// event the handler could not read, which is logged at a level an operator sees.
package eventskip

import "fmt"

// Skip is an event the handler does not act on, and why.
type Skip struct {
	Reason    string
	Malformed bool
}

func (s *Skip) Error() string { return s.Reason }

// New is a skip of an event that is well formed but not the handler's to act on.
func New(format string, args ...any) error {
	return &Skip{Reason: fmt.Sprintf(format, args...)}
}

// Malformed is a skip of an event the handler cannot read.
func Malformed(format string, args ...any) error {
	return &Skip{Reason: fmt.Sprintf(format, args...), Malformed: true}
}
