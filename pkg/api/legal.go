package api

import (
	"errors"
	"net/http"

	"github.com/opendunning/dunning/pkg/packet"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// sealAttempts bounds how often a packet's seal is retried when another
// write to the loan lands between the read and the seal.
const sealAttempts = 8

// getLegalPacket serves a loan's legal evidence packet (legal scope; admin
// holds it): it seals the loan's log when its last entry is not already a
// seal (a guarded write; another write in between means read and seal
// again), checks every seal on the way, and returns the packet. 409 when
// the log no longer holds what a seal sealed.
func (s *Server) getLegalPacket(w http.ResponseWriter, r *http.Request) {
	ctx, p := r.Context(), principalOf(r.Context())
	tenant, loan := r.PathValue("tenant"), r.PathValue("loan")
	if ref := invalidID("tenant", tenant, "loan", loan); ref != nil {
		writeRefusal(w, ref)
		return
	}
	if !p.Serves(tenant) {
		writeRefusal(w, notForTenant("tenant"))
		return
	}
	for range sealAttempts {
		raws, last, err := s.Log.ReadRaw(ctx, tenant, loan)
		if err != nil {
			s.Logger.Error("reading a loan's log for its packet", "err", err)
			writeRefusal(w, &refusal{http.StatusServiceUnavailable, "could not read the loan's log", ""})
			return
		}
		if len(raws) == 0 {
			writeRefusal(w, &refusal{http.StatusNotFound, "no events for this loan", "loan"})
			return
		}
		if !packet.Sealed(raws) {
			chain, lastSeal, through, err := packet.Chain(tenant, loan, raws)
			if err == nil {
				_, err = s.Log.AppendSeal(ctx, tenant, loan, last, policy.Sealed{Through: through, Chain: chain, Previous: lastSeal, At: s.Now(), By: p.String()})
			}
			if err != nil && !errors.Is(err, stage.ErrConflict) {
				s.packetError(w, tenant, loan, err)
				return
			}
			continue // sealed, or another write came first: read again
		}
		// Build checks every seal on the way, as Chain does.
		pk, err := packet.Build(tenant, loan, raws, s.Now())
		if err != nil {
			s.packetError(w, tenant, loan, err)
			return
		}
		writeJSON(w, http.StatusOK, pk)
		return
	}
	writeRefusal(w, &refusal{http.StatusServiceUnavailable, "the loan's log kept changing while it was sealed; try again", ""})
}

// packetError answers a packet that cannot be made: 409 when the log no
// longer holds what a seal sealed, 503 otherwise (logged).
func (s *Server) packetError(w http.ResponseWriter, tenant, loan string, err error) {
	if errors.Is(err, packet.ErrBroken) {
		writeRefusal(w, &refusal{http.StatusConflict, err.Error(), ""})
		return
	}
	s.Logger.Error("making a legal packet", "tenant", tenant, "loan", loan, "err", err)
	writeRefusal(w, &refusal{http.StatusServiceUnavailable, "could not seal the loan's log or build its packet", ""})
}
