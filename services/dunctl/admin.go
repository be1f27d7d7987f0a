package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/topology"
)

// credentials manages a keyring: dunctl credentials create|revoke|list|config.
// Every change rewrites the server's auth.conf; dunningd applies it within
// seconds, a nats-server cluster on `nats-server --signal reload`.
func credentials(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("credentials "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "./data/credentials", "the keyring: public keys, seeds just created, and the generated auth.conf")
	key := fs.String("key", "", "revoke: only this public key (default: every key of the identity)")
	hosts := fs.String("hosts", "localhost,127.0.0.1", "tls: other names and addresses each node's certificate covers, besides the node's own name")
	renew := fs.Bool("renew", false, "tls: issue the named nodes' certificates again although they exist")
	parts := fs.Int("partitions", 0, "create, revoke, config: record how many loans streams the loans are spread over (as dunctl provision --partitions; "+
		"the server's configuration names each partition's streams and consumers, and maps the lenders' events to them); 0: as recorded (1 if never)")
	if err := fs.Parse(args[1:]); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	k := access.Keyring{Dir: *dir}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "dunctl credentials %s: %v\n", cmd, err)
		return 1
	}
	if *parts != 0 {
		if err := k.SetPartitions(topology.Partitions(*parts)); err != nil {
			return fail(err)
		}
	}
	ident := func() (access.Identity, bool) {
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "dunctl credentials %s: name one identity: admin, service-NAME, lender-TENANT or agency-ID\n", cmd)
			return access.Identity{}, false
		}
		id, err := access.ParseIdentity(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "dunctl credentials %s: %v\n", cmd, err)
			return access.Identity{}, false
		}
		if _, ok := app.Grants(id.Name); id.Role == access.RoleService && !ok {
			fmt.Fprintf(stderr, "dunctl credentials %s: no service named %q (services: dunningd, gateway, notify, and the stages' services)\n", cmd, id.Name)
			return access.Identity{}, false
		}
		return id, true
	}
	switch cmd {
	case "tls":
		if fs.NArg() == 0 {
			fmt.Fprintln(stderr, "dunctl credentials tls: name the nodes (e.g. n1 n2 n3)")
			return 2
		}
		var extra []string
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				extra = append(extra, h)
			}
		}
		issued, err := k.IssueTLS(fs.Args(), extra, *renew)
		if err != nil {
			return fail(err)
		}
		for _, n := range issued {
			f := k.TLS(n)
			fmt.Fprintf(stdout, "%s: certificate %s, key %s\n", n, f.Cert, f.Key)
		}
		fmt.Fprintf(stdout, "CA certificate (clients: --nats-ca): %s\n", k.CAFile())
		return 0
	case "create":
		id, ok := ident()
		if !ok {
			return 2
		}
		seed, pub, err := k.Create(id)
		if err != nil {
			return fail(err)
		}
		conf, err := k.ServerConfig(app.Grants)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s: new key %s\nseed: %s (give it to the party, then delete it here)\nserver configuration: %s\n", id, pub, seed, conf)
		if id.Role == access.RoleService {
			fmt.Fprintf(stdout, "run the service with: --nats-seed %s\n", seed)
		}
		if id.Role == access.RoleLender {
			fmt.Fprintf(stdout, "the lender publishes to %s (e.g. nats --nkey %s --inbox-prefix %s pub ...)\n",
				topology.IntakeSubject(id.Name, "<loan>"), seed, id.Inbox())
		}
		return 0
	case "revoke":
		id, ok := ident()
		if !ok {
			return 2
		}
		if err := k.Revoke(id, *key); err != nil {
			return fail(err)
		}
		conf, err := k.ServerConfig(app.Grants)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s: revoked; server configuration: %s (connections with the key are closed on reload)\n", id, conf)
		return 0
	case "list":
		ids, err := k.Identities()
		if err != nil {
			return fail(err)
		}
		for _, id := range ids {
			keys, err := k.Keys(id)
			if err != nil {
				return fail(err)
			}
			for _, key := range keys {
				fmt.Fprintf(stdout, "%-28s %-10s %s\n", id, id.Account(), key)
			}
		}
		return 0
	case "config":
		conf, err := k.ServerConfig(app.Grants)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, conf)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// adminFlags are the flags of the commands that connect to NATS as admin.
type adminFlags struct {
	url, seed, ca string
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.url, "nats", "nats://127.0.0.1:4222", "NATS server URL")
	fs.StringVar(&a.seed, "nats-seed", "./data/credentials/admin.nk", "the admin's nkey seed file")
	fs.StringVar(&a.ca, "nats-ca", "", "speak TLS to NATS, verifying the servers against this CA certificate (deploy/credentials/tls/ca.pem)")
}

// start parses an admin command's flags (no positional arguments) and
// connects as admin. code is the exit status when ok is false.
func (a *adminFlags) start(fs *flag.FlagSet, args []string, stderr io.Writer) (nc *nats.Conn, js jetstream.JetStream, code int, ok bool) {
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil, nil, 0, false
	} else if err != nil {
		return nil, nil, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprint(stderr, usage)
		return nil, nil, 2, false
	}
	nc, js, err := a.connect()
	if err != nil {
		fmt.Fprintf(stderr, "dunctl %s: %v\n", fs.Name(), err)
		return nil, nil, 1, false
	}
	return nc, js, 0, true
}

func (a adminFlags) connect() (*nats.Conn, jetstream.JetStream, error) {
	auth, err := access.ClientOption(access.Admin, a.seed)
	if err != nil {
		return nil, nil, err
	}
	opts := []nats.Option{nats.Name("dunctl"), auth, nats.Timeout(5 * time.Second)}
	if a.ca != "" {
		tls, err := access.ClientTLS(a.ca)
		if err != nil {
			return nil, nil, fmt.Errorf("--nats-ca: %w", err)
		}
		opts = append(opts, tls)
	}
	nc, err := nats.Connect(a.url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s as admin: %w", a.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// provision creates or updates the declared streams and consumers.
func provision(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("provision", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a adminFlags
	a.register(fs)
	topo := topology.DefaultTopology()
	fs.IntVar(&topo.Replicas, "replicas", 3, "stream and consumer replicas (1 on a single server)")
	fs.DurationVar(&topo.AckWait, "ack-wait", topo.AckWait, "redeliver a message not acknowledged within this time")
	fs.IntVar(&topo.MaxDeliver, "max-deliver", topo.MaxDeliver, "deliveries of a failing message before it is dead-lettered")
	fs.BoolVar(&topo.RecreateLoans, "recreate-loans", false, "create an empty "+topology.StreamLoans+" although other streams exist (its loans are lost)")
	parts := fs.Int("partitions", 0, "how many loans streams the loans are spread over (fixed once provisioned; the same as dunctl credentials --partitions); "+
		"0: as provisioned before, 1 on a fresh install")
	nc, js, code, ok := a.start(fs, args, stderr)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo.Partitions = topology.Partitions(*parts)
	if *parts == 0 {
		k, err := topology.ReadPartitions(ctx, js)
		switch {
		case errors.Is(err, topology.ErrUnprovisioned):
			k = 1 // a fresh install, or an earlier release's (Provision says which)
		case err != nil:
			fmt.Fprintln(stderr, "dunctl provision:", err)
			return 1
		}
		topo.Partitions = k
	}
	if err := topo.Provision(ctx, js, pipeline.Consumers(topo.Partitions)); err != nil {
		fmt.Fprintln(stderr, "dunctl provision:", err)
		return 1
	}
	// Recorded once the audit stream exists, which provisioning creates.
	if err := audit(ctx, js, "provision", map[string]string{"replicas": strconv.Itoa(topo.Replicas),
		"ack_wait": topo.AckWait.String(), "max_deliver": strconv.Itoa(topo.MaxDeliver), "recreate_loans": strconv.FormatBool(topo.RecreateLoans), "partitions": strconv.Itoa(topo.Partitions.Count())}); err != nil {
		fmt.Fprintln(stderr, "dunctl provision:", err)
		return 1
	}
	fmt.Fprintf(stdout, "provisioned %d streams and %d consumers (replicas %d)\n", len(topo.Streams()), len(pipeline.Consumers(topo.Partitions)), topo.Replicas)
	return 0
}

// apiKeys manages the HTTP API's keys: dunctl apikey create|revoke|list.
// A running gateway or dunningd reloads the file within seconds.
func apiKeys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("apikey "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "./data/credentials/api-keys", "the API keys file (--api-keys of the gateway)")
	tenant := fs.String("tenant", "", "create: the tenant the key acts for ("+apikey.AnyTenant+" with the admin scope)")
	scopeList := fs.String("scopes", "", "create: comma-separated scopes: ingest, read, admin")
	if err := fs.Parse(args[1:]); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "dunctl apikey %s: %v\n", cmd, err)
		return 1
	}
	switch cmd {
	case "create":
		if fs.NArg() != 0 || *tenant == "" || *scopeList == "" {
			fmt.Fprintln(stderr, "dunctl apikey create: --tenant and --scopes are required")
			return 2
		}
		var sc []apikey.Scope
		for _, s := range strings.Split(*scopeList, ",") {
			sc = append(sc, apikey.Scope(strings.TrimSpace(s)))
		}
		key, id, err := apikey.Create(*file, *tenant, sc)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "key %s for tenant %s (%s), added to %s\n%s\n(shown once: only its hash is stored)\n", id, *tenant, *scopeList, *file, key)
		return 0
	case "revoke":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "dunctl apikey revoke: name the key's ID (dunctl apikey list)")
			return 2
		}
		if err := apikey.Revoke(*file, fs.Arg(0)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "key %s revoked\n", fs.Arg(0))
		return 0
	case "list":
		keys, err := apikey.List(*file)
		if err != nil {
			return fail(err)
		}
		for _, k := range keys {
			names := make([]string, len(k.Scopes))
			for i, s := range k.Scopes {
				names[i] = string(s)
			}
			fmt.Fprintf(stdout, "%-10s %-20s %s\n", k.ID, k.Tenant, strings.Join(names, ","))
		}
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// status prints every declared stream (messages, bytes, limit) and every
// declared consumer with its lag: what is pending, in flight and being
// redelivered. Missing ones are named.
func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a adminFlags
	a.register(fs)
	nc, js, code, ok := a.start(fs, args, stderr)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "stream\tmessages\tbytes\tmax bytes\tconsumers")
	bad := false
	topo := topology.DefaultTopology()
	if k, err := topology.ReadPartitions(ctx, js); err == nil {
		topo.Partitions = k
	} else {
		fmt.Fprintf(stderr, "dunctl status: %v (listing one partition)\n", err)
		bad = true
	}
	for _, name := range topo.Streams() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			fmt.Fprintf(w, "%s\tMISSING (%v)\t\t\t\n", name, err)
			bad = true
			continue
		}
		info := s.CachedInfo()
		limit := "none"
		if info.Config.MaxBytes > 0 {
			limit = fmt.Sprintf("%d (%.0f%% used)", info.Config.MaxBytes, 100*float64(info.State.Bytes)/float64(info.Config.MaxBytes))
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%d\n", name, info.State.Msgs, info.State.Bytes, limit, info.State.Consumers)
	}
	fmt.Fprintln(w, "\nconsumer\tstream\tpending\tack pending\tredelivered")
	for _, c := range pipeline.Consumers(topo.Partitions) {
		cons, err := js.Consumer(ctx, c.Stream, c.Name)
		if err != nil {
			fmt.Fprintf(w, "%s\t%s\tMISSING (%v)\t\t\n", c.Name, c.Stream, err)
			bad = true
			continue
		}
		info := cons.CachedInfo()
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", c.Name, c.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	if bad {
		return 1
	}
	return 0
}

// deadLetters lists the newest dead letters: when, which consumer, why,
// and the original subject, never the body (it may hold what a lender
// should not have sent).
func deadLetters(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "inspect" && args[0] != "replay") {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("deadletters "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a adminFlags
	a.register(fs)
	limit := fs.Int("limit", 50, "list: the newest N dead letters")
	consumer := fs.String("consumer", "", "list: only this consumer's")
	body := fs.Bool("body", false, "inspect: print the refused body too (it may hold personal data)")
	rest := args[1:]
	var seq uint64
	if cmd != "list" {
		// inspect|replay [flags] SEQ
		if len(rest) == 0 {
			fmt.Fprintf(stderr, "dunctl deadletters %s: name the dead letter's number (dunctl deadletters list)\n", cmd)
			return 2
		}
		n, err := strconv.ParseUint(rest[len(rest)-1], 10, 64)
		if err != nil || n == 0 {
			fmt.Fprintf(stderr, "dunctl deadletters %s: %q is not a dead letter's number\n", cmd, rest[len(rest)-1])
			return 2
		}
		seq, rest = n, rest[:len(rest)-1]
	}
	nc, js, code, ok := a.start(fs, rest, stderr)
	if !ok {
		return code
	}
	defer nc.Close()
	if cmd != "list" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		if cmd == "inspect" {
			err = inspect(ctx, js, seq, *body, stdout)
		} else {
			err = replay(ctx, js, seq, stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "dunctl deadletters %s: %v\n", cmd, err)
			return 1
		}
		return 0
	}
	if *limit < 1 {
		fmt.Fprintln(stderr, "dunctl deadletters list: --limit must be at least 1")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "seq\ttime\tconsumer\tclass\tsubject\treason")
	err := newestFirst(ctx, js, topology.StreamDLQ, *limit, func(m *jetstream.RawStreamMsg) bool {
		c := m.Header.Get(bus.HeaderDLQConsumer)
		// A consumer's name covers its copies on every partition
		// (escalation: escalation, escalation-p1, ...).
		if *consumer != "" && c != *consumer && !topology.OnPartition(c, *consumer) {
			return false
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", m.Sequence, m.Time.UTC().Format(time.RFC3339), c,
			m.Header.Get(bus.HeaderDLQClass), m.Header.Get(bus.HeaderDLQSubject), m.Header.Get(bus.HeaderDLQReason))
		return true
	})
	if err != nil {
		fmt.Fprintln(stderr, "dunctl deadletters:", err)
		return 1
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	return 0
}
