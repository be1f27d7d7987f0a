package codec

import (
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// ErrForgedHeaders: a loan-log entry carries schedule or rollup headers its
// kind never has. Such an entry is never applied: consumers dead-letter it
// and reads of the log skip it.
var ErrForgedHeaders = errors.New("forged loan-log entry")

// CheckHeaders refuses an entry whose schedule or rollup headers its
// writer never sets. The loan's timer schedules one of its own loan's
// steps (and the server marks it as rolling up its own subject); the server stamps a fired step
// with Nats-Scheduler naming the loan's timer; a closing or cancelling
// decision purges that timer; nothing else carries any of them. An entry
// that does was published by a client that may write the loan log (a
// stolen service credential) to purge the stream, cancel or move a timer,
// or pass for a step. Header names are compared without case, whatever the
// server honours.
func CheckHeaders(addr topology.LoanAddress, headers iter.Seq2[string, string]) error {
	timer := addr.Ref().Timer()
	scheduler := ""
	for k, v := range headers {
		lk := strings.ToLower(k)
		if lk != "nats-rollup" && !strings.HasPrefix(lk, "nats-schedule") {
			continue
		}
		if lk == "nats-scheduler" {
			scheduler = v
		}
		if !allowedHeader(addr, timer, lk, v) {
			return fmt.Errorf("%w: a %s entry with header %s", ErrForgedHeaders, addr.Kind, k)
		}
	}
	if addr.Kind == topology.KindStep && scheduler != timer {
		return fmt.Errorf("%w: a step the loan's timer did not fire", ErrForgedHeaders)
	}
	return nil
}

// NATSHeaders iterates a stored message's headers, each key with its last
// value (how the server reads them).
func NATSHeaders(h map[string][]string) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for k, vs := range h {
			v := ""
			if len(vs) > 0 {
				v = vs[len(vs)-1]
			}
			if !yield(k, v) {
				return
			}
		}
	}
}

func allowedHeader(addr topology.LoanAddress, timer, key, value string) bool {
	switch addr.Kind {
	case topology.KindTimer:
		switch key {
		case "nats-schedule":
			return true
		case "nats-rollup":
			// The server adds it to every schedule: the timer replaces the last.
			return value == "sub"
		case "nats-schedule-target":
			t, err := topology.ParseLoanSubject(value)
			return err == nil && t.Kind == topology.KindStep && t.Ref() == addr.Ref()
		}
	case topology.KindStep, Closed.Token, Cancelled.Token:
		switch key {
		case "nats-scheduler":
			return value == timer
		case "nats-schedule-next":
			return value == "purge"
		}
	}
	return false
}

// DecodeStored decodes an entry as stored, headers included: what every
// reader of the log applies (an entry with forged headers is an error, as
// an undecodable one is).
func DecodeStored(addr topology.LoanAddress, headers map[string][]string, data []byte) (policy.Event, error) {
	if err := CheckHeaders(addr, NATSHeaders(headers)); err != nil {
		return nil, err
	}
	return Decode(addr, data)
}
