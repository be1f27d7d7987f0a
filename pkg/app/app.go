// Package app runs a pipeline process: the all-in-one dunningd or one
// service. Every main calls Run, so the five services and the all-in-one
// share one set of flags, one startup sequence and one router constructor.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/api"
	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/bus"
	"github.com/opendunning/dunning/pkg/notify"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/policyfile"
	"github.com/opendunning/dunning/pkg/stage"
	"github.com/opendunning/dunning/pkg/topology"
)

// Options say what a process runs.
type Options struct {
	Name string
	// Stages run in this process, each on its durable consumer.
	Stages []stage.Stage
	// Intake consumes lender events published over NATS.
	Intake bool
	// API serves lender ingest and timelines (health and metrics are always served).
	API bool
	// Dispatch fans committed contacts out to per-channel task subjects;
	// Notify delivers them to the webhooks given by --webhooks.
	Dispatch, Notify bool
	// Feed writes placements and recalls to the agencies' feeds (the
	// handoff service, and dunningd).
	Feed bool
	// Embedded starts an in-process NATS server instead of connecting to
	// one, with StartServer (package allinone supplies both for dunningd).
	Embedded bool
	// StartServer starts the in-process server. It is a function here, not
	// an import, so that only dunningd links nats-server.
	StartServer func(ServerConfig) (Server, error)
	// DefaultHTTP is the default listen address of the process's HTTP server.
	DefaultHTTP string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Ready, if set, is called with the HTTP address once the process serves.
	Ready func(httpAddr string)
	// MetricsReady, if set, is called with --metrics-http's address once
	// /metrics is served there.
	MetricsReady func(addr string)
	// Log receives the process's log (nil: standard error).
	Log io.Writer
}

// ServerConfig configures the in-process NATS server; it has the fields of
// embedded.Config, so package allinone converts one to the other.
type ServerConfig struct {
	StoreDir   string
	Host       string
	Port       int
	DontListen bool
	SyncAlways bool
	Keyring    string
}

// Server is a running in-process NATS server.
type Server interface {
	ConnectAs(id access.Identity, name string, opts ...nats.Option) (*nats.Conn, error)
	ClientURL() string
	// Reload applies the keyring's current credentials.
	Reload() error
	Shutdown()
}

// Config is the parsed command line.
type Config struct {
	NATSURL string
	// NATSSeed is the service's nkey seed file; NATSIdentity its identity.
	NATSSeed     string
	NATSIdentity string
	// NATSCA is the CA certificate the servers' TLS certificates are
	// verified against (TLS to NATS when set).
	NATSCA     string
	DataDir    string
	NATSListen string
	Fsync      string
	HTTP       string
	// MaxConns and MaxConnsPerIP cap open HTTP connections.
	MaxConns, MaxConnsPerIP int
	Day                     time.Duration
	GraceDays               int
	HandoffDPD              int
	LegalDPD                int
	Agency                  string
	LogLevel                string
	Policies                string
	Webhooks                string
	SecretFile              string
	AckWait                 time.Duration
	MaxDeliver              int
	Replicas                int
	// Partitions is how many loans streams dunningd provisions (fixed once
	// provisioned).
	Partitions int
	// MaxKeepAlive bounds how long a message is kept from redelivery while
	// its handler runs (a hung handler is then redelivered, and one hung on
	// every delivery dead-lettered as abandoned).
	MaxKeepAlive time.Duration
	// YieldFloor is how many messages the process's own consumers handle at
	// once while lender events wait on the intake (0: off).
	YieldFloor int
	// MetricsHTTP, when set, serves /metrics there instead of on HTTP.
	MetricsHTTP string
	// APIKeys is the file of the HTTP API's keys (package apikey).
	APIKeys string
	// TLSCert and TLSKey, when set, serve HTTPS.
	TLSCert, TLSKey string
}

func parse(name string, args []string, o Options) (Config, error) {
	def := policy.Default()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var c Config
	c.Fsync = "always"
	if o.Embedded {
		fs.StringVar(&c.DataDir, "data-dir", "./data", "JetStream store directory of the embedded server")
		fs.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "address the embedded server listens on for other clients; 'none' for in-process only")
		fs.StringVar(&c.Fsync, "fsync", "always", "embedded server durability: 'always' (fsync before ack) or 'interval' (NATS default: periodic)")
	} else {
		fs.StringVar(&c.NATSURL, "nats", "nats://127.0.0.1:4222", "NATS server URL")
		fs.StringVar(&c.NATSSeed, "nats-seed", "", "the service's NATS credential: an nkey seed file (dunctl credentials create service-"+name+")")
		fs.StringVar(&c.NATSIdentity, "nats-identity", access.Service(name).String(), "the identity the seed belongs to (its inbox prefix follows it)")
		fs.StringVar(&c.NATSCA, "nats-ca", "", "speak TLS to NATS and verify the servers against this CA certificate (PEM; dunctl credentials tls makes it)")
	}
	fs.StringVar(&c.HTTP, "http", o.DefaultHTTP, "HTTP listen address (API, /healthz, /readyz, and /metrics unless --metrics-http)")
	fs.StringVar(&c.MetricsHTTP, "metrics-http", "", "serve /metrics on this address of its own (e.g. one only the monitoring network reaches) instead of --http's")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	if o.API {
		help := "the API keys file (dunctl apikey create); every API call needs one of its keys"
		if o.Embedded {
			help += " (default: <data-dir>/credentials/api-keys, created with a development admin key on first start)"
		}
		fs.StringVar(&c.APIKeys, "api-keys", "", help)
	}
	fs.IntVar(&c.MaxConns, "http-max-conns", 512, "open HTTP connections at most, in all (keep it well under the process's open-file limit)")
	fs.IntVar(&c.MaxConnsPerIP, "http-max-conns-per-ip", 64, "open HTTP connections at most from one remote address")
	fs.DurationVar(&c.Day, "day", policy.RealDay, "length of a business day; shorten (e.g. 1s) to watch the ladder in minutes")
	if o.Notify {
		fs.StringVar(&c.Webhooks, "webhooks", "", "contact-task webhooks, CHANNEL=URL,... (e.g. sms=https://sms.example/hook); channels without one are left to the lender's NATS subscribers")
		fs.StringVar(&c.SecretFile, "webhook-secret-file", "", "file holding the HMAC-SHA256 key that signs webhook bodies (required with --webhooks): the key is the file's text with surrounding whitespace trimmed, used as is (a base64 line is not decoded), at least 16 bytes")
	}
	fs.StringVar(&c.Policies, "policies", "", "directory of policy files (*.yaml), reloaded on change or SIGHUP; empty: the shipped policy")
	fs.IntVar(&c.GraceDays, "grace-days", def.GraceDays, "without --policies: days of grace before overdue confirmation")
	fs.IntVar(&c.HandoffDPD, "handoff-dpd", def.HandoffDPD, "without --policies: DPD at which an unpaid account is placed with an agency")
	fs.IntVar(&c.LegalDPD, "legal-dpd", def.LegalDPD, "without --policies: DPD at which an unpaid account is referred for legal action")
	fs.StringVar(&c.Agency, "agency", def.Agency, "without --policies: agency that receives handed-off accounts")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	topo := topology.DefaultTopology()
	c.AckWait, c.Replicas, c.MaxDeliver = topo.AckWait, topo.Replicas, topo.MaxDeliver
	fs.DurationVar(&c.MaxKeepAlive, "max-keepalive", bus.DefaultMaxKeepAlive,
		"keep a message from redelivery at most this long while its handler runs; one hung on every delivery is dead-lettered as abandoned")
	fs.IntVar(&c.YieldFloor, "yield-floor", bus.DefaultYieldFloor,
		"while lender events wait on the intake, handle at most this many of the pipeline's own messages at once (0: never yield)")
	if o.Embedded {
		// Only dunningd provisions; a service runs on its consumers as the
		// admin provisioned them (dunctl provision takes these flags).
		fs.DurationVar(&c.AckWait, "ack-wait", topo.AckWait, "redeliver a message not acknowledged within this time (a crashed stage's work resumes after it)")
		fs.IntVar(&c.Replicas, "replicas", topo.Replicas, "stream and consumer replicas (3 on a NATS cluster)")
		fs.IntVar(&c.MaxDeliver, "max-deliver", topo.MaxDeliver, "deliveries of a failing message before it is dead-lettered")
		fs.IntVar(&c.Partitions, "partitions", 0, "how many loans streams the loans are spread over (fixed once provisioned; 0: as recorded by an earlier start, 1 on the first)")
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.AckWait < time.Second {
		return Config{}, fmt.Errorf("--ack-wait must be at least 1s, got %s", c.AckWait)
	}
	if err := topology.Partitions(c.Partitions).Validate(); o.Embedded && c.Partitions != 0 && err != nil {
		return Config{}, fmt.Errorf("--%w", err)
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		return Config{}, fmt.Errorf("--replicas must be 1, 3 or 5, got %d", c.Replicas)
	}
	if c.MaxDeliver < 2 {
		return Config{}, fmt.Errorf("--max-deliver must be at least 2, got %d", c.MaxDeliver)
	}
	if c.YieldFloor < 0 {
		return Config{}, fmt.Errorf("--yield-floor must be 0 (off) or more, got %d", c.YieldFloor)
	}
	if c.MaxKeepAlive < time.Second {
		return Config{}, fmt.Errorf("--max-keepalive must be at least 1s, got %s", c.MaxKeepAlive)
	}
	if c.MaxConns < 1 || c.MaxConnsPerIP < 1 || c.MaxConnsPerIP > c.MaxConns {
		return Config{}, fmt.Errorf("--http-max-conns and --http-max-conns-per-ip must be positive, the second at most the first; got %d and %d", c.MaxConns, c.MaxConnsPerIP)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return Config{}, errors.New("--tls-cert and --tls-key go together")
	}
	if o.API && !o.Embedded && c.APIKeys == "" {
		return Config{}, errors.New("--api-keys is required: no caller uses the API anonymously (create a key with: dunctl apikey create --file FILE --tenant TENANT --scopes ingest,read)")
	}
	if !o.Embedded && c.NATSSeed == "" {
		return Config{}, fmt.Errorf("--nats-seed is required: no client connects to NATS anonymously (create one with: dunctl credentials create --dir DIR %s)", c.NATSIdentity)
	}
	if c.Fsync != "always" && c.Fsync != "interval" {
		return Config{}, fmt.Errorf("--fsync must be 'always' or 'interval', got %q", c.Fsync)
	}
	return c, nil
}

// setup is everything a process needs that can be checked before it
// connects anywhere: flags, log level, day length, policies, webhooks.
type setup struct {
	cfg      Config
	log      *slog.Logger
	cal      policy.Calendar
	policies *policyfile.Live
	notifier *notify.Notifier
	natsHost string
	natsPort int
	dataDir  string
	keys     *apikey.Store
}

// prepare parses and validates the whole configuration.
func prepare(args []string, o Options) (setup, error) {
	cfg, err := parse(o.Name, args, o)
	if err != nil {
		return setup{}, err
	}
	st := setup{cfg: cfg}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return setup{}, fmt.Errorf("--log-level: %w", err)
	}
	out := o.Log
	if out == nil {
		out = os.Stderr
	}
	st.log = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level})).With("service", o.Name)
	if st.cal, err = policy.NewCalendar(cfg.Day); err != nil {
		return setup{}, fmt.Errorf("--day: %w", err)
	}
	if st.policies, err = loadPolicies(cfg); err != nil {
		return setup{}, err
	}
	if o.Notify {
		if st.notifier, err = newNotifier(cfg); err != nil {
			return setup{}, err
		}
	}
	if cfg.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return setup{}, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	}
	if o.API && cfg.APIKeys != "" {
		if st.keys, err = apikey.Open(cfg.APIKeys); err != nil {
			return setup{}, fmt.Errorf("--api-keys: %w", err)
		}
	}
	if o.Embedded {
		if o.StartServer == nil {
			return setup{}, fmt.Errorf("%s: built without an embedded NATS server", o.Name)
		}
		if st.natsHost, st.natsPort, err = listenAddr(cfg.NATSListen); err != nil {
			return setup{}, err
		}
		if st.dataDir, err = filepath.Abs(cfg.DataDir); err != nil {
			return setup{}, fmt.Errorf("--data-dir: %w", err)
		}
	}
	return st, nil
}

// Run parses args and runs the process until ctx ends.
func Run(ctx context.Context, args []string, o Options) error {
	// Configuration: all of it, before anything starts or connects.
	st, err := prepare(args, o)
	if errors.Is(err, flag.ErrHelp) {
		return nil // usage was printed
	}
	if err != nil {
		return err
	}
	cfg, log := st.cfg, st.log
	now := o.Now
	if now == nil {
		now = time.Now
	}
	// The HTTP port too: a busy one fails the start before NATS is touched.
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("--http: listening on %s: %w", cfg.HTTP, err)
	}
	defer ln.Close()
	ln = api.Limit(ln, cfg.MaxConns, cfg.MaxConnsPerIP)
	var metricsLn net.Listener
	if cfg.MetricsHTTP != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsHTTP); err != nil {
			return fmt.Errorf("--metrics-http: listening on %s: %w", cfg.MetricsHTTP, err)
		}
		defer metricsLn.Close()
		metricsLn = api.Limit(metricsLn, 64, 16)
	}
	log.Info("starting", "day", cfg.Day, "policies", st.policies.Book().Versions(), "embedded", o.Embedded)

	// NATS and the pipeline's parts.
	nc, err := connect(o, st)
	if err != nil {
		return err
	}
	defer nc.stop()
	topo := topology.DefaultTopology()
	topo.AckWait, topo.MaxDeliver, topo.Replicas = cfg.AckWait, cfg.MaxDeliver, cfg.Replicas
	if topo.Partitions = topology.Partitions(cfg.Partitions); o.Embedded && cfg.Partitions == 0 {
		// As the keyring recorded it at an earlier start (connect).
		if topo.Partitions, err = (access.Keyring{Dir: filepath.Join(st.dataDir, "credentials")}).Partitions(); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ladder := func(tenant, product string) policy.Ladder {
		return policy.Ladder{Policy: st.policies.Book().For(tenant, product), Calendar: st.cal}
	}
	p, err := pipeline.New(ctx, pipeline.Config{Name: o.Name, Topology: topo, Ladder: ladder, Now: now, Logger: log, Registry: reg,
		Parts: pipeline.Parts{Stages: o.Stages, Intake: o.Intake, Dispatch: o.Dispatch, Feed: o.Feed, Notifier: st.notifier},
		Admin: nc.admin, MaxKeepAlive: cfg.MaxKeepAlive, YieldFloor: yieldFloor(cfg.YieldFloor), Waiting: func(missing []string) {
			if len(missing) > 0 {
				log.Warn("waiting for the topology an admin provisions (dunctl provision)", "missing", strings.Join(missing, ", "))
			}
		}}, nc.dial)
	if err != nil {
		return stopped(ctx, log, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	if cfg.Policies != "" {
		st.policies.OnReload = p.Metrics.Policy.Count
		g.Go(func() error { st.policies.Watch(gctx, 2*time.Second, log); return nil })
	}
	if nc.reload != nil {
		g.Go(func() error {
			watchCredentials(gctx, filepath.Dir(nc.authFile), nc.stamp, 2*time.Second, nc.reload, log)
			return nil
		})
	}
	var running atomic.Bool
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error {
		select {
		case <-p.Running():
			running.Store(true)
		case <-gctx.Done():
		}
		return nil
	})

	// API, health and metrics.
	var verifier *api.Verifier
	if o.API {
		verifier = api.NewVerifier(reg, api.DefaultVerifyLimits())
		verifier.Log, verifier.Ladder, verifier.Now, verifier.Logger = p.Log, ladder, now, log
	}
	srv := &api.Server{Ingestor: p.Ingestor, Log: p.Log, Ladder: ladder, Now: now, Gatherer: reg, Logger: log, Verifier: verifier,
		Ready: func() error {
			if !p.Conn.IsConnected() {
				return errors.New("not connected to nats")
			}
			if !running.Load() {
				return errors.New("handlers not subscribed yet")
			}
			// A stream or consumer removed under a running process: say
			// which, rather than report ready while nothing flows.
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			missing, err := p.Missing(cctx)
			if err != nil {
				return fmt.Errorf("checking the topology: %w", err)
			}
			if len(missing) > 0 {
				return fmt.Errorf("missing: %s", strings.Join(missing, ", "))
			}
			return nil
		}}
	if o.API {
		if st.keys == nil {
			// dunningd: the keys under its data directory, with a
			// development admin key on the first start.
			if st.keys, err = devAPIKeys(st.dataDir, log); err != nil {
				return err
			}
		}
		srv.Keys = st.keys
		g.Go(func() error {
			st.keys.Watch(gctx.Done(), 2*time.Second, func(err error) {
				if err != nil {
					log.Error("reloading API keys", "file", st.keys.Path, "err", err)
					return
				}
				log.Info("API keys reloaded", "file", st.keys.Path)
			})
			return nil
		})
	}
	if metricsLn != nil {
		// Metrics on their own address: the API's answers 404 for them.
		metrics := &api.Server{Gatherer: reg}
		srv.Gatherer = nil
		serve(gctx, g, metricsLn, metricsOnly(metrics.Handler()), cfg.TLSCert, cfg.TLSKey)
		log.Info("serving metrics", "http", metricsLn.Addr().String())
		if o.MetricsReady != nil {
			o.MetricsReady(metricsLn.Addr().String())
		}
	}
	h := srv.Handler()
	if !o.API {
		h = healthOnly(h)
	}
	serve(gctx, g, ln, h, cfg.TLSCert, cfg.TLSKey)
	log.Info("serving", "http", ln.Addr().String())
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	// Shutdown.
	err = g.Wait()
	log.Info("stopped")
	return stopped(ctx, log, err)
}

// stopped is what a run that ended with err returns: a stop requested
// while the process was still starting (a SIGTERM during provisioning or
// subscribing) cancels what was in flight, and that is a clean stop, not a
// failure.
func stopped(ctx context.Context, log *slog.Logger, err error) error {
	if err != nil && ctx.Err() != nil {
		log.Warn("stopped while starting", "err", err)
		return nil
	}
	return err
}

// natsConns is how the process reaches NATS: dial connects as the
// process's own identity, admin (dunningd only) as the admin, which alone
// may provision; reload applies changed credentials to the embedded
// server; stop shuts that server down.
type natsConns struct {
	dial, admin pipeline.Dialer
	reload      func() error
	authFile    string
	stamp       string
	stop        func()
}

// connect returns how the process dials NATS: the configured server with
// the service's credential, or the in-process one it starts with the
// credentials under its data directory.
func connect(o Options, st setup) (natsConns, error) {
	cfg, log := st.cfg, st.log
	// The server reports a refused publish or subscription asynchronously:
	// it is logged, since it means a credential lacks a permission.
	errs := nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Error("nats", "subject", sub.Subject, "err", err)
			return
		}
		log.Error("nats", "err", err)
	})
	if !o.Embedded {
		id, err := access.ParseIdentity(cfg.NATSIdentity)
		if err != nil {
			return natsConns{}, fmt.Errorf("--nats-identity: %w", err)
		}
		auth, err := access.ClientOption(id, cfg.NATSSeed)
		if err != nil {
			return natsConns{}, fmt.Errorf("--nats-seed: %w", err)
		}
		tls := func(*nats.Options) error { return nil }
		if cfg.NATSCA != "" {
			if tls, err = access.ClientTLS(cfg.NATSCA); err != nil {
				return natsConns{}, fmt.Errorf("--nats-ca: %w", err)
			}
		}
		// Reconnect quickly (nats.go waits 2 s by default, with jitter against
		// storms): after a server restart every pending step and payment
		// waits on this, and a collection ladder runs on day boundaries.
		return natsConns{dial: func(name string) (*nats.Conn, error) {
			return nats.Connect(cfg.NATSURL, nats.Name(name), auth, tls, errs, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
				nats.ReconnectWait(250*time.Millisecond), nats.ReconnectJitter(250*time.Millisecond, time.Second))
		}, stop: func() {}}, nil
	}
	if err := adoptGlobalAccount(st.dataDir, log); err != nil {
		return natsConns{}, err
	}
	keys := access.Keyring{Dir: filepath.Join(st.dataDir, "credentials")}
	self := access.Service(o.Name)
	if err := devCredentials(keys, log, access.Admin, self); err != nil {
		return natsConns{}, err
	}
	// The server's configuration names each partition's streams and
	// consumers; provisioning refuses another K over stored loans. Without
	// --partitions, the K recorded at an earlier start (1 on the first).
	if cfg.Partitions != 0 {
		if err := keys.SetPartitions(topology.Partitions(cfg.Partitions)); err != nil {
			return natsConns{}, err
		}
	}
	stamp := keyringStamp(keys.Dir)
	authFile, err := keys.ServerConfig(Grants)
	if err != nil {
		return natsConns{}, fmt.Errorf("writing the nats server's accounts: %w", err)
	}
	srv, err := o.StartServer(ServerConfig{StoreDir: st.dataDir, Host: st.natsHost, Port: st.natsPort,
		DontListen: st.natsPort == 0, SyncAlways: cfg.Fsync == "always", Keyring: keys.Dir})
	if err != nil {
		return natsConns{}, err
	}
	log.Info("embedded nats started", "store", st.dataDir, "listen", srv.ClientURL(), "fsync", cfg.Fsync, "credentials", keys.Dir)
	return natsConns{
		dial:  func(name string) (*nats.Conn, error) { return srv.ConnectAs(self, name, errs) },
		admin: func(name string) (*nats.Conn, error) { return srv.ConnectAs(access.Admin, name, errs) },
		reload: func() error {
			if _, err := keys.ServerConfig(Grants); err != nil {
				return err
			}
			return srv.Reload()
		},
		authFile: authFile,
		stamp:    stamp,
		stop:     srv.Shutdown,
	}, nil
}

// DevAPIKeyFile is where dunningd leaves the development admin key it
// creates on its first start (under its data directory's credentials).
const DevAPIKeyFile = "dev-api-key"

// devAPIKeys opens dunningd's API keys under its data directory, creating
// the file with one admin key on the first start, whose key is written to
// DevAPIKeyFile beside it (mode 0600) for the README's examples.
func devAPIKeys(dataDir string, log *slog.Logger) (*apikey.Store, error) {
	dir := filepath.Join(dataDir, "credentials")
	path := filepath.Join(dir, "api-keys")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		key, id, err := apikey.Create(path, apikey.AnyTenant, []apikey.Scope{apikey.ScopeAdmin})
		if err != nil {
			return nil, fmt.Errorf("creating the development API key: %w", err)
		}
		devFile := filepath.Join(dir, DevAPIKeyFile)
		if err := os.WriteFile(devFile, []byte(key+"\n"), 0o600); err != nil {
			return nil, err
		}
		log.Info("created a development API key (admin scope, every tenant)", "id", id, "key_file", devFile,
			"use", "curl -H \"Authorization: Bearer $(cat "+devFile+")\" ...")
	}
	return apikey.Open(path)
}

// adoptGlobalAccount moves a data directory's streams from the global
// account ($G), where dunningd kept them before it had accounts, to the
// pipeline's account, before the server starts: otherwise it would start
// with an empty DUNNING account and every loan would seem gone. JetStream
// keeps an account's streams in <store>/jetstream/<account>, nothing of
// the account's name inside them. With both present it refuses to guess.
func adoptGlobalAccount(dataDir string, log *slog.Logger) error {
	global := filepath.Join(dataDir, "jetstream", "$G")
	ours := filepath.Join(dataDir, "jetstream", access.AccountDunning)
	if _, err := os.Stat(filepath.Join(global, "streams", topology.StreamLoans)); err != nil {
		return nil // nothing of ours in the global account
	}
	if _, err := os.Stat(ours); err == nil {
		return fmt.Errorf("%s holds the pipeline's streams in both the global account (%s) and %s: move the one to keep to %s while dunningd is stopped",
			dataDir, global, ours, ours)
	}
	if err := os.Rename(global, ours); err != nil {
		return fmt.Errorf("moving the streams of the global account to %s: %w", access.AccountDunning, err)
	}
	log.Warn("moved the pipeline's streams from the global account to account "+access.AccountDunning+" (data from before NATS accounts)",
		"from", global, "to", ours)
	return nil
}

// keyringStamp changes whenever a keyring's public keys do.
func keyringStamp(dir string) string {
	var b strings.Builder
	matches, _ := filepath.Glob(filepath.Join(dir, "*.pub"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			fmt.Fprintf(&b, "%s %d %d;", m, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// devCredentials creates the identities dunningd needs on its first start,
// under its data directory, and says how to use them.
func devCredentials(keys access.Keyring, log *slog.Logger, ids ...access.Identity) error {
	for _, id := range ids {
		if _, err := keys.Keys(id); err == nil {
			continue
		} else if !errors.Is(err, access.ErrUnknownIdentity) {
			return err
		}
		seed, _, err := keys.Create(id)
		if err != nil {
			return fmt.Errorf("creating the credential of %s: %w", id, err)
		}
		log.Info("created a NATS credential", "identity", id.String(), "seed", seed)
	}
	return nil
}

// watchCredentials applies the keyring's credentials whenever one of its
// files changes (dunctl credentials create or revoke), checking every
// interval: no restart is needed to admit or shut out a party.
// last is the keyring's stamp when the server's configuration was
// written, so that a change made between then and this watcher's start is
// not missed.
func watchCredentials(ctx context.Context, dir, last string, interval time.Duration, reload func() error, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		if now := keyringStamp(dir); now != last {
			last = now
			if err := reload(); err != nil {
				log.Error("reloading nats credentials", "err", err)
				continue
			}
			log.Info("nats credentials reloaded", "dir", dir)
		}
	}
}

// serve answers HTTP on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, g *errgroup.Group, ln net.Listener, h http.Handler, certFile, keyFile string) {
	// Every phase of a request is bounded, so slow clients cannot hold
	// connections (and the process's open files) indefinitely.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	// gRPC callers of the Connect service need HTTP/2: over TLS it is
	// negotiated; in the clear (a lender's back end inside its network)
	// it is HTTP/2 with prior knowledge.
	hs.Protocols = new(http.Protocols)
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetHTTP2(true)
	hs.Protocols.SetUnencryptedHTTP2(true)
	// One HTTP/2 connection carries many requests at once, past the
	// per-address connection cap: bound them per connection too.
	hs.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 16}
	g.Go(func() error {
		serveFn := func() error { return hs.Serve(ln) }
		if certFile != "" {
			serveFn = func() error { return hs.ServeTLS(ln, certFile, keyFile) }
		}
		if err := serveFn(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
}

// loadPolicies returns the policy directory's book, or the shipped policy
// with the command line's overrides.
func loadPolicies(cfg Config) (*policyfile.Live, error) {
	if cfg.Policies != "" {
		l, err := policyfile.NewLive(cfg.Policies)
		if err != nil {
			return nil, fmt.Errorf("loading policies:\n%w", err)
		}
		return l, nil
	}
	pol, err := policyfile.Default()
	if err != nil {
		return nil, err
	}
	if cfg.GraceDays != pol.GraceDays || cfg.HandoffDPD != pol.HandoffDPD || cfg.LegalDPD != pol.LegalDPD || cfg.Agency != pol.Agency {
		pol.GraceDays, pol.HandoffDPD, pol.LegalDPD, pol.Agency = cfg.GraceDays, cfg.HandoffDPD, cfg.LegalDPD, cfg.Agency
		if pol.Cadence[0].Stage == policy.StageFirstContact {
			pol.Cadence[0].DPD = pol.ConfirmDPD()
		}
		pol.Version += "+flags"
	}
	if err := pol.Validate(); err != nil {
		return nil, fmt.Errorf("invalid policy: %w", err)
	}
	return policyfile.Fixed(pol), nil
}

// newNotifier builds the webhook deliverer from the command line.
func newNotifier(cfg Config) (*notify.Notifier, error) {
	hooks, err := notify.ParseWebhooks(cfg.Webhooks)
	if err != nil {
		return nil, fmt.Errorf("--webhooks: %w", err)
	}
	if len(hooks) == 0 {
		return nil, nil
	}
	if cfg.SecretFile == "" {
		return nil, errors.New("--webhooks needs --webhook-secret-file: receivers must be able to verify the signature")
	}
	secret, err := os.ReadFile(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file: %w", err)
	}
	// The key is the file's text, trimmed, not what it decodes to: receivers
	// HMAC with the same characters, whatever encoding produced them.
	secret = []byte(strings.TrimSpace(string(secret)))
	if len(secret) < 16 {
		return nil, errors.New("--webhook-secret-file: the key (the file's text, whitespace trimmed) must be at least 16 bytes")
	}
	return &notify.Notifier{Webhooks: hooks, Secret: secret, Client: &http.Client{Timeout: 15 * time.Second}, Now: time.Now}, nil
}

// metricsOnly serves /metrics and nothing else.
func metricsOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// healthOnly hides the lender API on processes that do not serve it.
func healthOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			h.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

func listenAddr(s string) (string, int, error) {
	if s == "none" || s == "" {
		return "", 0, nil
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("--nats-listen: %w", err)
	}
	var port int
	if _, err := fmt.Sscanf(p, "%d", &port); err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("--nats-listen: bad port %q", p)
	}
	if port == 0 {
		port = -1 // any free port
	}
	return strings.TrimSpace(host), port, nil
}

// Main is the whole of a service's main function: it runs the named
// Service until SIGINT or SIGTERM and exits with status 1 on error.
func Main(name string) {
	o, ok := Service(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "no service named %q\n", name)
		os.Exit(2)
	}
	MainOptions(o)
}

// MainOptions is Main for a process described by its options.
func MainOptions(o Options) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", o.Name, err)
		os.Exit(1)
	}
}

// yieldFloor turns the flag (0: off) into pipeline.Config's (negative: off).
func yieldFloor(flag int) int {
	if flag == 0 {
		return -1
	}
	return flag
}
