package bus

import (
	"maps"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opendunning/dunning/pkg/codec"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/topology"
)

// DecodeLoan decodes a loan-log message as a consumer receives it. Every
// error is permanent: redelivery cannot fix a bad subject or body.
func DecodeLoan(msg *message.Message) (topology.LoanAddress, policy.Event, error) {
	addr, err := topology.ParseLoanSubject(msg.Metadata.Get(MetaSubject))
	if err != nil {
		return addr, nil, Permanent(err)
	}
	if err := codec.CheckHeaders(addr, maps.All(msg.Metadata)); err != nil {
		return addr, nil, Permanent(err)
	}
	ev, err := codec.Decode(addr, msg.Payload)
	if err != nil {
		return addr, nil, Permanent(err)
	}
	return addr, ev, nil
}
