package awsfake

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event is one PutEvents entry as the fake received it.
type Event struct {
	EventID      string // empty for a failed entry
	Source       string
	DetailType   string
	Detail       string // the JSON text, as PutEvents carries it
	EventBusName string // as sent; empty means the default bus
	Resources    []string
	Time         time.Time // the entry's Time, or when the fake received it
	ErrorCode    string    // set for an entry the fake answered as failed
}

type eventsState struct {
	accepted []Event
	failed   []Event
	failNext int
}

// Events returns the entries that were accepted (what a rule on the bus would see), oldest first.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneEvents(s.events.accepted)
}

// FailedEvents returns the entries the fake answered as failed entries, oldest first.
func (s *Server) FailedEvents() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneEvents(s.events.failed)
}

// FailPutEvents makes the next n PutEvents entries come back as failed entries with ErrorCode
// InternalFailure (the request itself still answers 200, as AWS does for partial failures).
func (s *Server) FailPutEvents(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events.failNext = n
}

func cloneEvents(in []Event) []Event {
	out := make([]Event, len(in))
	for i, e := range in {
		e.Resources = append([]string(nil), e.Resources...)
		out[i] = e
	}
	return out
}

type putEventsEntry struct {
	Source       string        `json:"Source"`
	DetailType   string        `json:"DetailType"`
	Detail       string        `json:"Detail"`
	EventBusName string        `json:"EventBusName"`
	Resources    []string      `json:"Resources"`
	Time         *epochSeconds `json:"Time"`
}

type putEventsResultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

func (s *Server) putEvents(body []byte) (any, *apiError) {
	var in struct {
		Entries []putEventsEntry `json:"Entries"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if len(in.Entries) < 1 || len(in.Entries) > 10 {
		return nil, errBadRequest("ValidationException", "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and 10")
	}
	now := time.Now().UTC()

	s.mu.Lock()
	defer s.mu.Unlock()
	out := struct {
		FailedEntryCount int                    `json:"FailedEntryCount"`
		Entries          []putEventsResultEntry `json:"Entries"`
	}{Entries: make([]putEventsResultEntry, 0, len(in.Entries))}
	for _, entry := range in.Entries {
		ev := Event{
			Source:       entry.Source,
			DetailType:   entry.DetailType,
			Detail:       entry.Detail,
			EventBusName: entry.EventBusName,
			Resources:    append([]string(nil), entry.Resources...),
			Time:         now,
		}
		if entry.Time != nil {
			ev.Time = time.Time(*entry.Time)
		}
		var res putEventsResultEntry
		switch {
		case s.events.failNext > 0:
			s.events.failNext--
			res = putEventsResultEntry{ErrorCode: "InternalFailure", ErrorMessage: "awsfake: injected failure"}
		case entry.Source == "" || entry.DetailType == "" || entry.Detail == "":
			res = putEventsResultEntry{ErrorCode: "InvalidArgument", ErrorMessage: "Parameters Source, DetailType and Detail are required."}
		case !isJSONObject(entry.Detail):
			res = putEventsResultEntry{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."}
		default:
			ev.EventID = uuid.NewString()
			res = putEventsResultEntry{EventID: ev.EventID}
			s.events.accepted = append(s.events.accepted, ev)
		}
		if res.ErrorCode != "" {
			ev.ErrorCode = res.ErrorCode
			s.events.failed = append(s.events.failed, ev)
			out.FailedEntryCount++
		}
		out.Entries = append(out.Entries, res)
	}
	return out, nil
}

func isJSONObject(s string) bool {
	var v map[string]json.RawMessage
	return json.Unmarshal([]byte(s), &v) == nil && v != nil
}
