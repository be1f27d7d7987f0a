package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/ingest"
	"github.com/opendunning/dunning/pkg/topology"
)

// auditRecord is one admin action, as dunctl records it on the audit
// stream: what, with which arguments, by whom (the OS user and host the
// command ran as; the NATS identity is always the admin) and when.
type auditRecord struct {
	Time    time.Time         `json:"time"`
	Action  string            `json:"action"`
	Details map[string]string `json:"details,omitempty"`
	OSUser  string            `json:"os_user"`
	Host    string            `json:"host"`
}

// audit records an admin action on DUNNING_AUDIT. An action that cannot be
// recorded is reported: the caller fails rather than act unrecorded when
// it records before acting.
func audit(ctx context.Context, js jetstream.JetStream, action string, details map[string]string) error {
	r := auditRecord{Time: time.Now().UTC(), Action: action, Details: details}
	if u, err := user.Current(); err == nil {
		r.OSUser = u.Username
	}
	r.Host, _ = os.Hostname()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := js.Publish(ctx, topology.AuditSubject(action), b); err != nil {
		return fmt.Errorf("recording the action on %s: %w", topology.StreamAudit, err)
	}
	return nil
}

// auditCmd lists the audit stream: dunctl audit list.
func auditCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("audit list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a adminFlags
	a.register(fs)
	limit := fs.Int("limit", 50, "the newest N records")
	nc, js, code, ok := a.start(fs, args[1:], stderr)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := newestFirst(ctx, js, topology.StreamAudit, *limit, func(m *jetstream.RawStreamMsg) bool {
		var r auditRecord
		if err := json.Unmarshal(m.Data, &r); err != nil {
			fmt.Fprintf(stdout, "%d\t(unreadable record on %s)\n", m.Sequence, m.Subject)
			return true
		}
		keys := make([]string, 0, len(r.Details))
		for k := range r.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+r.Details[k])
		}
		fmt.Fprintf(stdout, "%d\t%s\t%s\t%s@%s\t%s\n", m.Sequence, r.Time.Format(time.RFC3339), r.Action, r.OSUser, r.Host, strings.Join(kv, " "))
		return true
	})
	if err != nil {
		fmt.Fprintln(stderr, "dunctl audit:", err)
		return 1
	}
	return 0
}

// newestFirst calls show with stream's messages from the newest back, until
// show has accepted limit of them (it returns false to skip one).
func newestFirst(ctx context.Context, js jetstream.JetStream, stream string, limit int, show func(*jetstream.RawStreamMsg) bool) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	st := s.CachedInfo().State
	for seq, shown := st.LastSeq, 0; seq >= st.FirstSeq && seq > 0 && shown < limit; seq-- {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if show(m) {
			shown++
		}
	}
	return nil
}

// deadLetter reads dead letter seq of DUNNING_DLQ.
func deadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) (*jetstream.RawStreamMsg, error) {
	s, err := js.Stream(ctx, topology.StreamDLQ)
	if err != nil {
		return nil, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("no dead letter %d (dunctl deadletters list shows their numbers)", seq)
	}
	return m, err
}

// inspect prints one dead letter: its headers and, with body, the refused
// body itself (a lender event as JSON). The body may hold what the lender
// sent, personal data included: it is printed only when asked for.
func inspect(ctx context.Context, js jetstream.JetStream, seq uint64, body bool, stdout io.Writer) error {
	m, err := deadLetter(ctx, js, seq)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dead letter %d, %s, on %s\n", m.Sequence, m.Time.UTC().Format(time.RFC3339), m.Subject)
	keys := make([]string, 0, len(m.Header))
	for k := range m.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(stdout, "  %s: %s\n", k, strings.Join(m.Header.Values(k), ", "))
	}
	fmt.Fprintf(stdout, "  body: %d bytes\n", len(m.Data))
	if !body {
		return nil
	}
	if topology.IsIntakeConsumer(m.Header.Get(bus.HeaderDLQConsumer)) {
		if ev, err := ingest.Decode(m.Header.Get(bus.OrigHeader("Content-Type")), m.Data); err == nil {
			out, _ := protojson.MarshalOptions{Multiline: true}.Marshal(ev)
			fmt.Fprintf(stdout, "%s\n", out)
			return nil
		}
	}
	fmt.Fprintf(stdout, "%q\n", m.Data)
	return nil
}

// replay sends a dead-lettered lender event to intake again, once its
// cause is fixed (the loan's first installment recorded, the lender's
// system corrected): the same body on its original intake subject. Only
// the intake's dead letters are lender events; another consumer's dead
// letter is an entry still in the loan's log, which nothing replays.
// The replay is recorded on the audit stream first, and carries a message
// ID of its own, so replaying twice within the intake stream's duplicate
// window sends it once.
func replay(ctx context.Context, js jetstream.JetStream, seq uint64, stdout io.Writer) error {
	m, err := deadLetter(ctx, js, seq)
	if err != nil {
		return err
	}
	consumer, subject := m.Header.Get(bus.HeaderDLQConsumer), m.Header.Get(bus.HeaderDLQSubject)
	if !topology.IsIntakeConsumer(consumer) {
		return fmt.Errorf("dead letter %d is %s's: an entry of the loan's log (%s), still there; only intake's dead letters (lender events) are replayed", seq, consumer, subject)
	}
	// The headers are the publisher's word; where the dead letter is
	// stored is the server's: only the intake's owner (and the admin) may
	// write dunning.dlq.intake, so a compromised other service cannot
	// dress up a message for the admin to replay into a tenant's intake.
	if m.Subject != topology.DLQSubject(consumer) {
		return fmt.Errorf("dead letter %d says it is %s's but is stored on %s, not %s: not replayed", seq, consumer, m.Subject, topology.DLQSubject(consumer))
	}
	if _, err := topology.ParseStoredIntake(subject); err != nil {
		return fmt.Errorf("dead letter %d: its original subject %q is not an intake subject: %w", seq, subject, err)
	}
	if err := audit(ctx, js, "deadletter_replay", map[string]string{"dlq_seq": strconv.FormatUint(seq, 10), "subject": subject}); err != nil {
		return err
	}
	msg := nats.NewMsg(subject)
	msg.Data = m.Data
	msg.Header.Set(jetstream.MsgIDHeader, "replay-"+strconv.FormatUint(seq, 10))
	// The body's encoding is the lender's Content-Type, which the dead
	// letter keeps under the original-header prefix: without it a JSON
	// event would be read as protobuf and refused again.
	if ct := m.Header.Get(bus.OrigHeader("Content-Type")); ct != "" {
		msg.Header.Set("Content-Type", ct)
	}
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return fmt.Errorf("publishing to %s: %w", subject, err)
	}
	if ack.Duplicate {
		fmt.Fprintf(stdout, "dead letter %d was replayed moments ago (intake sequence %d); not sent again\n", seq, ack.Sequence)
		return nil
	}
	fmt.Fprintf(stdout, "dead letter %d replayed to %s (intake sequence %d); if it is refused again it is dead-lettered anew\n", seq, subject, ack.Sequence)
	return nil
}
