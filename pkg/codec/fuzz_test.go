package codec

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// kinds keeps the order the committed corpus was found with.
var kinds = []*Kind{Due, Repaid, Settled, Timer, Step, Overdue, Contact, Escalated, HandedOff, Legal, Closed, Cancelled, Deferred, Outcome}

// FuzzDecode: any body on any loan-log subject decodes to an event or a
// permanent error, and never panics; a decoded decision folds into a case.
func FuzzDecode(f *testing.F) {
	_, m, _ := Encode("acme", "L-1", policy.Decision{Kind: policy.KindEscalated, Tasks: []policy.ContactTask{{ID: "x", Channel: policy.ChannelSMS}}})
	b, _ := proto.Marshal(m)
	f.Add(uint8(7), b)
	f.Add(uint8(3), []byte{0x0a, 0x02, 'c', '1'})
	f.Add(uint8(0), []byte("garbage"))
	f.Fuzz(func(t *testing.T, k uint8, body []byte) {
		kind := kinds[int(k)%len(kinds)]
		ev, err := Decode(topology.LoanAddress{Tenant: "acme", Loan: "L-1", Kind: kind.Token}, body)
		if err != nil {
			return
		}
		c := &policy.Case{}
		c.Apply(policy.Entry{Seq: 1, Event: ev})
		_ = policy.Ladder{Policy: policy.Default(), Calendar: policy.Calendar{Day: policy.RealDay}}.NextStep(c)
	})
}
