// Command dunctl is the operator's tool: check a policy file before
// deploying it, print the shipped policy, show a loan's timeline.
//
//	dunctl policy check FILE...   report every problem of each file, exit 1 if any
//	dunctl policy default         print the shipped policy (docs/domain.md)
//	dunctl policy dryrun [flags]  print the ladder a loan would follow, day by day
//	dunctl rules show [PACK...]   print the contact-rule packs, each rule with its citation
//	dunctl rules explain TENANT LOAN CONTACT
//	                              every rule as it applied to one contact
//	dunctl timeline [--api URL] TENANT LOAN
//	                              print a loan's timeline from a running pipeline
//	dunctl legal packet|verify    export a loan's legal packet, verify one
//	dunctl credentials ...        create, revoke and list NATS credentials
//	dunctl provision              create the pipeline's streams and consumers (admin)
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opendunning/dunning/pkg/contactrules"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/policyfile"
)

const usage = `usage:
  dunctl policy check FILE...   report every problem of each policy file; exit 1 if any
  dunctl policy default         print the shipped policy file
  dunctl policy dryrun [--policy FILE] [--amount MINOR] [--currency CUR] [--pay DPD:MINOR]... [--days N] [--locale L] [--texts]
                                print the ladder a loan would follow, day by day
  dunctl rules show [PACK...]   print the contact-rule packs (default: every shipped pack): each rule's ID, kind, text and citation
  dunctl rules explain [--api URL] TENANT LOAN CONTACT
                                for one contact of a loan, every rule and how it applied: held (when, until when), passed, stopped
  dunctl timeline [--api URL] TENANT LOAN
                                print a loan's timeline from the pipeline's HTTP API (default http://127.0.0.1:8080)
  dunctl legal packet [--api URL] TENANT LOAN
                                a loan's legal evidence packet (JSON; the key needs the legal scope), sealing its log
  dunctl legal verify PACKET    check a packet offline: its chain, seals, content and summary; exit 1 naming what fails
  dunctl credentials create|revoke|list|config [--dir DIR] [--key PUBKEY] [--partitions K] [IDENTITY]
                                manage NATS credentials (IDENTITY: admin, service-NAME, lender-TENANT, agency-ID)
                                and regenerate the server's accounts (DIR/auth.conf; default ./data/credentials)
  dunctl credentials tls [--dir DIR] [--hosts H,...] [--renew] NODE...
                                the cluster's TLS: a CA (DIR/tls/ca.pem, made once) and a certificate per node
  dunctl apikey create|revoke|list [--file FILE] [--tenant TENANT --scopes ingest,read|admin] [ID]
                                manage the HTTP API's keys (default file ./data/credentials/api-keys)
  dunctl status [--nats URL] [--nats-seed ADMIN.nk] [--nats-ca CA.pem]
                                every stream (messages, bytes, limit) and consumer (pending, in flight, redelivered), as admin
  dunctl deadletters list [--nats URL] [--nats-seed ADMIN.nk] [--nats-ca CA.pem] [--limit N] [--consumer C]
                                the newest dead letters: number, time, consumer, class, subject and reason (never the body)
  dunctl deadletters inspect [--body] [admin flags] N
                                one dead letter's headers (and, with --body, the refused body: it may hold personal data)
  dunctl deadletters replay [admin flags] N
                                send an intake dead letter (a lender event) to intake again once its cause is fixed (audited)
  dunctl audit list [admin flags] [--limit N]
                                the admin actions recorded: provisioning, replays (who, where, when, with what)
  dunctl provision [--nats URL] [--nats-seed ADMIN.nk] [--nats-ca CA.pem] [--replicas N] [--partitions K] [--recreate-loans]
                                create or update the pipeline's streams and consumers, as admin
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "timeline":
			return timeline(args[1:], stdout, stderr)
		case "rules":
			return rules(args[1:], stdout, stderr)
		case "credentials":
			return credentials(args[1:], stdout, stderr)
		case "provision":
			return provision(args[1:], stdout, stderr)
		case "apikey":
			return apiKeys(args[1:], stdout, stderr)
		case "status":
			return status(args[1:], stdout, stderr)
		case "deadletters":
			return deadLetters(args[1:], stdout, stderr)
		case "audit":
			return auditCmd(args[1:], stdout, stderr)
		case "legal":
			return legal(args[1:], stdout, stderr)
		}
	}
	if len(args) < 2 || args[0] != "policy" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[1] {
	case "check":
		if len(args) < 3 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		bad := false
		for _, f := range args[2:] {
			p, err := policyfile.Load(f)
			if err != nil {
				bad = true
				fmt.Fprintln(stderr, err)
				continue
			}
			fmt.Fprintf(stdout, "%s: ok (version %s, tenant %s, %d cadence steps, %d templates)\n", f, p.Version, p.Tenant, len(p.Cadence), len(p.Templates))
		}
		if bad {
			return 1
		}
		return 0
	case "default":
		_, _ = stdout.Write(policyfile.DefaultYAML)
		return 0
	case "dryrun":
		if err := dryrun(args[2:], stdout); err != nil {
			fmt.Fprintln(stderr, "dunctl policy dryrun:", err)
			return 1
		}
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// rules prints contact-rule packs, one rule a line, so that a lender and
// its compliance officer read what the gate applies and why.
func rules(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "explain" {
		return explain(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "show" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	packs, err := contactrules.Packs()
	if err != nil {
		fmt.Fprintln(stderr, "dunctl rules:", err)
		return 1
	}
	ids := args[1:]
	if len(ids) == 0 {
		ids = contactrules.IDs()
	}
	for _, id := range ids {
		if packs[id] == nil {
			fmt.Fprintf(stderr, "dunctl rules: no pack %q (shipped: %s)\n", id, strings.Join(contactrules.IDs(), ", "))
			return 2
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, id := range ids {
		p := packs[id]
		fmt.Fprintf(tw, "pack %s, version %s\n", p.ID, p.Version)
		fmt.Fprintln(tw, "rule\tkind\ttext\tcitation")
		for _, r := range p.Rules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Kind, r.Text, r.Citation)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

// payments is a repeatable --pay DPD:MINOR flag.
type payments []policy.Payment

func (p *payments) String() string { return fmt.Sprint(*p) }

func (p *payments) Set(v string) error {
	d, a, ok := strings.Cut(v, ":")
	dpd, err1 := strconv.Atoi(d)
	amt, err2 := strconv.ParseInt(a, 10, 64)
	if !ok || err1 != nil || err2 != nil || dpd < 0 || amt <= 0 {
		return fmt.Errorf("want DPD:MINOR_UNITS, e.g. 10:50000, got %q", v)
	}
	*p = append(*p, policy.Payment{DPD: dpd, Amount: amt})
	return nil
}

// dryrun plays one installment through a policy with the stages' own
// decision functions and prints every decision, day by day.
func dryrun(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dryrun", flag.ContinueOnError)
	file := fs.String("policy", "", "policy file (default: the shipped policy)")
	amount := fs.Int64("amount", 100000, "installment amount in minor units")
	currency := fs.String("currency", "CNY", "currency")
	days := fs.Int("days", 0, "days past due to play (default: to the policy's legal referral)")
	locale := fs.String("locale", "", "locale of rendered texts (default: the policy's)")
	texts := fs.Bool("texts", false, "print each contact's rendered text")
	var pays payments
	fs.Var(&pays, "pay", "a repayment DPD:MINOR_UNITS (repeatable)")
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		return err
	}
	pol, err := policyfile.Default()
	if *file != "" {
		pol, err = policyfile.Load(*file)
	}
	if err != nil {
		return err
	}
	if *days == 0 {
		*days = pol.ReferralDPD()
	}
	if *amount <= 0 || !policy.ValidCurrency(*currency) || *days < 1 {
		return fmt.Errorf("--amount must be positive, --currency an ISO code, --days at least 1")
	}
	l := policy.Ladder{Policy: pol, Calendar: policy.Calendar{Day: policy.RealDay}}
	due := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	in := policy.InstallmentDue{ID: "1", Amount: policy.Money{Currency: *currency, Minor: *amount}, DueAt: due, Zone: "UTC", ContactRef: "dry-run"}
	decisions := l.Simulate(in, pays, *days)
	fmt.Fprintf(out, "policy %s (tenant %s), installment of %s due on day 0, %d days played", pol.Version, pol.Tenant, policy.FormatMoney(in.Amount), *days)
	for _, p := range pays {
		fmt.Fprintf(out, "; pays %s on DPD %d", policy.FormatMoney(policy.Money{Currency: *currency, Minor: p.Amount}), p.DPD)
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "DPD\ttier\tstage\tdecision\toverdue\tcontacts\treason")
	for _, d := range decisions {
		var contacts []string
		for _, t := range d.Tasks {
			contacts = append(contacts, t.Channel.String()+":"+t.Template)
		}
		extra := strings.Join(contacts, " ")
		if d.Kind == policy.KindHandedOff {
			extra = "agency " + d.AgencyID
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Ctx.DPD, d.Ctx.Tier, d.Ctx.Stage, d.Kind, policy.FormatMoney(d.Ctx.Overdue), extra, d.Ctx.Reason)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if !*texts {
		return nil
	}
	fmt.Fprintln(out)
	for _, d := range decisions {
		for _, t := range d.Tasks {
			if *locale != "" {
				t.Locale = *locale
			}
			t.Reference = "REF0000000"
			text, err := pol.Render(t, "Lender")
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "DPD %d %s (%s): %s\n", d.Ctx.DPD, t.Channel, t.Tone, text)
		}
	}
	return nil
}

// timeline prints a loan's timeline as the API renders it in text: 0 when
// printed, 1 when the API cannot be reached or refuses, 2 on a usage error.
func timeline(args []string, stdout, stderr io.Writer) int {
	return apiText("timeline", []string{"tenant", "loan"}, func(p []string) []string {
		return []string{"v1", "tenants", p[0], "loans", p[1], "timeline"}
	}, args, stdout, stderr)
}

// explain prints, for one contact of a loan, every rule and how it applied.
func explain(args []string, stdout, stderr io.Writer) int {
	return apiText("rules explain", []string{"tenant", "loan", "contact"}, func(p []string) []string {
		return []string{"v1", "tenants", p[0], "loans", p[1], "contacts", p[2], "rules"}
	}, args, stdout, stderr)
}

// apiText runs a read command against the HTTP API: its positional
// arguments (identifiers, named in what) make the route's path, and the
// API's text rendering is printed.
func apiText(cmd string, what []string, path func([]string) []string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	api := fs.String("api", "http://127.0.0.1:8080", "base URL of the pipeline's HTTP API (dunningd or the gateway)")
	keyFile := fs.String("key-file", "./data/credentials/dev-api-key", "file holding an API key with the read scope (DUNNING_API_KEY overrides; make run creates this one)")
	fs.SetOutput(stderr)
	// Flags may come before or after the identifiers.
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return 0
		} else if err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	base, err := url.Parse(*api)
	if len(pos) != len(what) || err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		if len(pos) == len(what) {
			fmt.Fprintf(stderr, "dunctl %s: --api must be an http(s) URL such as http://127.0.0.1:8080, got %q\n", cmd, *api)
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	for i, w := range what {
		if !policy.ValidID(pos[i]) {
			fmt.Fprintf(stderr, "dunctl %s: %s %q: identifiers are 1-64 characters of A-Z, a-z, 0-9, '-' or '_'\n", cmd, w, pos[i])
			return 2
		}
	}
	key := os.Getenv("DUNNING_API_KEY")
	if key == "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "dunctl %s: an API key is needed: set DUNNING_API_KEY or --key-file (%v)\n", cmd, err)
			return 2
		}
		key = strings.TrimSpace(string(b))
	}
	var subject []string
	for i, w := range what {
		subject = append(subject, w+" "+pos[i])
	}
	if err := printText(base, key, path(pos), strings.Join(subject, ", "), stdout); err != nil {
		fmt.Fprintf(stderr, "dunctl %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func printText(base *url.URL, key string, path []string, subject string, out io.Writer) error {
	u := base.JoinPath(path...)
	u.RawQuery = "format=text"
	client := &http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the message names the API itself
		}
		return fmt.Errorf("cannot reach the API at %s (is the pipeline running? make run starts it): %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading %s from %s: %w", u.Path, base, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Field string }
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		if e.Field != "" {
			e.Error += " (field " + e.Field + ")"
		}
		return fmt.Errorf("%s: HTTP %d: %s", subject, resp.StatusCode, e.Error)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return errors.New("the API answered " + ct + ", not text: is --api the pipeline's HTTP API?")
	}
	_, err = out.Write(body)
	return err
}
