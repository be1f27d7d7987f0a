package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/policyfile"
	"github.com/opendunning/dunning/pkg/topology"
	dunningv1 "github.com/opendunning/dunning/proto/dunning/v1"
)

// Contact rules end to end, with accelerated days, on a real server: the
// shipped policy (cn: 08:00-22:00 in the borrower's zone, releases from
// 08:00 spread over two hours), the stages, the release gate and dispatch.
// Local time under an accelerated day is defined as in the README: hour h
// of DPD n is at due + n·day + h·day/24, and the test computes it so, not
// with the gate's code.
//
// A loan that never pays: its first contact is decided at local midnight,
// held by cn.hours, and its task reaches dunning.task.> inside the window,
// never before 08:00, carrying not_after at 22:00. A loan paid in full
// while its contact is held: the contact is cancelled (contact_cancelled)
// and no task for it is ever published.
func TestContactsLeaveInTheBorrowersWindow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 3*time.Second)
	day := h.day
	shipped, err := policyfile.Default()
	if err != nil {
		t.Fatal(err)
	}
	h.ladder.Policy.Jurisdiction, h.ladder.Policy.Contact = shipped.Jurisdiction, shipped.Contact
	h.startPipeline()
	h.startParts("dispatch", access.Service("notify"), pipeline.Parts{Dispatch: true})

	// The cured loan is the one of a few whose slot comes last in the
	// spread: the most time to pay between the hold and the release.
	cured := ""
	for i := range 16 {
		id := fmt.Sprintf("L-cure-%d", i)
		if cured == "" || policy.SpreadOffset(policy.LoanKey(tenant, id), shipped.Contact.SendSpread) >
			policy.SpreadOffset(policy.LoanKey(tenant, cured), shipped.Contact.SendSpread) {
			cured = id
		}
	}
	due := time.Now()
	h.send(dueEvent("L-never", "1", 100000, due))
	h.send(dueEvent(cured, "1", 100000, due))

	local := func(t time.Time) time.Duration { // wall time of t under the accelerated day
		since := t.Sub(due) % day
		return time.Duration(float64(since) * float64(24*time.Hour) / float64(day))
	}
	waitFor(t, 2*day+10*time.Second, func() error {
		if _, ok := h.decision(cured, policy.KindContactHeld); !ok {
			return fmt.Errorf("%s: no contact held yet", cured)
		}
		return nil
	})
	h.send(payEvent(cured, "p1", 100000))

	h.waitKind("L-never", policy.KindContactReleased, 1, 2*day+10*time.Second)
	held, _ := h.decision("L-never", policy.KindContactHeld)
	requested, _ := h.decision("L-never", policy.KindContactRequested)
	if held.Rule != "cn.hours" || local(held.HeldUntil) < 8*time.Hour || local(held.HeldUntil) >= 10*time.Hour {
		t.Errorf("held by %q until %s local, want cn.hours until a slot 08:00-10:00", held.Rule, local(held.HeldUntil))
	}
	if w := local(requested.Ctx.DecidedAt); w >= 8*time.Hour {
		t.Errorf("first contact decided at %s local, want before 08:00 (from the DPD's midnight)", w)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	task := func(loan string) (*jetstream.RawStreamMsg, error) {
		s, err := h.js.Stream(ctx, topology.StreamTasks)
		if err != nil {
			return nil, err
		}
		return s.GetLastMsgForSubject(ctx, topology.TaskSubject("sms", tenant, loan, "*"))
	}
	var msg *jetstream.RawStreamMsg
	waitFor(t, 10*time.Second, func() error {
		msg, err = task("L-never")
		return err
	})
	if w := local(msg.Time); w < 8*time.Hour || w >= 22*time.Hour {
		t.Errorf("the SMS task was published at %s local, outside 08:00-22:00", w)
	}
	var del dunningv1.Delivery
	if err := proto.Unmarshal(msg.Data, &del); err != nil {
		t.Fatal(err)
	}
	notAfter := del.GetTask().GetNotAfter().AsTime()
	if w := local(notAfter); notAfter.Before(msg.Time) || w < 22*time.Hour-time.Minute || w > 22*time.Hour+time.Minute {
		t.Errorf("not_after %s local (%s), want 22:00 of the day it was published", w, notAfter)
	}

	h.waitKind(cured, policy.KindContactCancelled, 1, 2*day+10*time.Second)
	if d, ok := h.decision(cured, policy.KindContactReleased); ok {
		t.Errorf("%s: released %+v after it was paid", cured, d.Tasks)
	}
	if m, err := task(cured); err == nil {
		t.Errorf("%s: a task was published for it (%s)", cured, m.Subject)
	}
}
