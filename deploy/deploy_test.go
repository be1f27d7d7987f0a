package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/apikey"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/loanlog"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/pipeline"
	"github.com/opendunning/dunning/pkg/topology"
	"github.com/opendunning/dunning/test/attack"
)

// The tests validate the deployment files without a Docker engine:
//
//   - TestCompose: docker-compose.yml is strict-decoded and checked for
//     consistency: every image built from deploy/Dockerfile runs a binary
//     under services/, every mounted and referenced file exists, NATS URLs,
//     ports, volumes and the NATS nodes' own configurations agree.
//   - TestDockerfile: stages, build command, non-root user, entrypoint.
//   - TestPrometheus: prometheus.yml and rules.yml (found through the compose
//     mounts) are strict-decoded; scrape targets are compose services on the
//     ports those services listen on; every rule's PromQL is read and its
//     windows, job names, label values and annotation templates checked;
//     rules_test.yml tests every alert.
//   - TestPromtool (when promtool is on PATH; it fails without one when
//     DUNNING_REQUIRE_PROMTOOL=1, as under make test, which installs it into
//     ./bin): promtool check config, check rules and test rules
//     (rules_test.yml).
//   - TestDeployment (not with -short): the NATS configuration files start a
//     real three-node cluster in process, parsed as nats-server parses
//     them with each node's environment (loopback addresses, a store
//     directory, its certificate); every dunning service of the compose
//     file (the gateway, the five stages, notify) runs in process with the
//     compose file's own command lines (--nats pointed at that cluster,
//     --http at a free port). Clients must speak TLS and routes demand a
//     node certificate; the admin provisions R3 streams and the services
//     turn ready; lender events and a bad intake message flow through; the
//     NATS attack matrix (test/attack) runs against it with control loans
//     unchanged; then every metric, label and rate() in rules.yml is
//     checked against what the services' /metrics endpoints export.
//   - TestDeploymentProcesses (make test-cluster): the same on real
//     nats-server processes started from copies of the configuration files.
//
// What they cannot check: that the images build and the containers start
// (no Docker engine), the external images' tags, and the metrics of
// prometheus-nats-exporter (listed in exporterMetrics from its source).

const repoRoot = ".."

// ---------------------------------------------------------------- compose

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	// Extensions holds the x-* keys: the anchors services share.
	Extensions map[string]any `yaml:",inline"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Build           *composeBuild     `yaml:"build"`
	Command         []string          `yaml:"command"`
	Entrypoint      []string          `yaml:"entrypoint"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	DependsOn       yaml.Node         `yaml:"depends_on"`
	Restart         string            `yaml:"restart"`
	ReadOnly        bool              `yaml:"read_only"`
	CapDrop         []string          `yaml:"cap_drop"`
	SecurityOpt     []string          `yaml:"security_opt"`
	StopSignal      string            `yaml:"stop_signal"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     *composeHealth    `yaml:"healthcheck"`
	Environment     map[string]string `yaml:"environment"`
}

type composeBuild struct {
	Context    string            `yaml:"context"`
	Dockerfile string            `yaml:"dockerfile"`
	Args       map[string]string `yaml:"args"`
}

type composeHealth struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// Kinds of compose service; every service must be one of them, so that a
// new one is either validated or makes the test fail.
const (
	kindDunning  = "dunning"  // built from deploy/Dockerfile
	kindNATS     = "nats"     // a node of the cluster
	kindExporter = "exporter" // prometheus-nats-exporter for one node
	kindProm     = "prometheus"
)

func (s composeService) kind() string {
	switch {
	case s.Build != nil:
		return kindDunning
	case strings.HasPrefix(s.Image, "nats:"):
		return kindNATS
	case strings.HasPrefix(s.Image, "natsio/prometheus-nats-exporter:"):
		return kindExporter
	case strings.HasPrefix(s.Image, "prom/prometheus:"):
		return kindProm
	}
	return ""
}

// dependsOn returns the services s depends on and the condition of each.
func (s composeService) dependsOn() (map[string]string, error) {
	deps := map[string]string{}
	switch s.DependsOn.Kind {
	case 0:
	case yaml.SequenceNode:
		var names []string
		if err := s.DependsOn.Decode(&names); err != nil {
			return nil, err
		}
		for _, n := range names {
			deps[n] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
			Restart   bool   `yaml:"restart"`
			Required  *bool  `yaml:"required"`
		}
		if err := s.DependsOn.Decode(&m); err != nil {
			return nil, err
		}
		for n, d := range m {
			deps[n] = d.Condition
		}
	default:
		return nil, errors.New("depends_on must be a list or a map")
	}
	return deps, nil
}

// flags reads a command line of --name value / --name=value pairs (every
// flag of the services takes a value).
func flags(args []string) (map[string]string, error) {
	f := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
		name := strings.TrimLeft(a, "-")
		if k, v, ok := strings.Cut(name, "="); ok {
			f[k] = v
			continue
		}
		if i+1 >= len(args) {
			return nil, fmt.Errorf("flag %s has no value", a)
		}
		f[name] = args[i+1]
		i++
	}
	return f, nil
}

// mount maps a path inside a service's container to the repository file
// bind-mounted there, or to the named volume holding it. As in Docker, the
// most specific mount wins (a file mounted inside a mounted directory).
func (s composeService) mount(containerPath string) (hostPath, volume string, ok bool) {
	best := -1
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		src, dst := parts[0], parts[1]
		rel, err := filepath.Rel(dst, containerPath)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || len(dst) <= best {
			continue
		}
		best, ok = len(dst), true
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			hostPath, volume = filepath.Join(repoRoot, src, rel), ""
		} else {
			hostPath, volume = "", src
		}
	}
	return hostPath, volume, ok
}

var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}`)

// interpolate replaces ${VAR:-default} with its default, as compose does
// when VAR is unset; a variable without a default is an error.
func interpolate(s string) (string, error) {
	var errs []error
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		sub := interpolation.FindStringSubmatch(m)
		if sub[2] == "" {
			errs = append(errs, fmt.Errorf("%s has no default", m))
		}
		return sub[3]
	})
	if strings.Contains(out, "$") {
		errs = append(errs, errors.New("a '$' is left after interpolation: only ${VAR:-default} is supported"))
	}
	return out, errors.Join(errs...)
}

// strictYAML decodes data into v, refusing unknown keys.
func strictYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// -------------------------------------------------------------- prometheus

type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string `yaml:"job_name"`
	MetricsPath   string `yaml:"metrics_path"`
	StaticConfigs []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	} `yaml:"static_configs"`
	DNSSDConfigs []struct {
		Names           []string `yaml:"names"`
		Type            string   `yaml:"type"`
		Port            int      `yaml:"port"`
		RefreshInterval string   `yaml:"refresh_interval"`
	} `yaml:"dns_sd_configs"`
	RelabelConfigs []struct {
		SourceLabels []string `yaml:"source_labels"`
		TargetLabel  string   `yaml:"target_label"`
		Regex        string   `yaml:"regex"`
		Replacement  string   `yaml:"replacement"`
		Action       string   `yaml:"action"`
	} `yaml:"relabel_configs"`
}

// target is one scrape target of a job: a compose service and its port.
type target struct {
	Job, Host string
	Port      int
}

func (p promConfig) targets() ([]target, error) {
	var out []target
	for _, j := range p.ScrapeConfigs {
		for _, sc := range j.StaticConfigs {
			for _, tg := range sc.Targets {
				host, port, err := net.SplitHostPort(tg)
				if err != nil {
					return nil, fmt.Errorf("job %s: target %q: %w", j.JobName, tg, err)
				}
				n, err := strconv.Atoi(port)
				if err != nil {
					return nil, fmt.Errorf("job %s: target %q: bad port", j.JobName, tg)
				}
				out = append(out, target{j.JobName, host, n})
			}
		}
		for _, d := range j.DNSSDConfigs {
			if d.Type != "A" && d.Type != "AAAA" {
				return nil, fmt.Errorf("job %s: dns_sd type %q needs a port per record; use A", j.JobName, d.Type)
			}
			for _, name := range d.Names {
				out = append(out, target{j.JobName, name, d.Port})
			}
		}
	}
	return out, nil
}

// targetLabels are the labels Prometheus attaches to every series of a
// target: job, instance, static labels and relabelling targets.
func (p promConfig) targetLabels() map[string]bool {
	l := map[string]bool{"job": true, "instance": true}
	for _, j := range p.ScrapeConfigs {
		for _, sc := range j.StaticConfigs {
			for k := range sc.Labels {
				l[k] = true
			}
		}
		for _, r := range j.RelabelConfigs {
			if r.TargetLabel != "" {
				l[r.TargetLabel] = true
			}
		}
	}
	return l
}

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func (r rule) name() string { return r.Alert + r.Record }

// exporterMetrics are the metrics rules.yml may use that no code of this
// module exports: Prometheus' own `up`, and prometheus-nats-exporter's, as
// its source defines them (collector/healthz.go: BuildFQName("gnatsd",
// "healthz", "status"), label server_id, 0 when /healthz is ok).
var exporterMetrics = metricSet{
	"up":                    {Type: "gauge", Labels: map[string]bool{}},
	"gnatsd_healthz_status": {Type: "gauge", Labels: map[string]bool{"server_id": true}},
	// collector/jsz.go (-jsz=all): BuildFQName("jetstream", "server",
	// "max_storage" | "total_message_bytes") with the server labels, and
	// ("jetstream", "stream", "total_bytes") with the stream labels too.
	"jetstream_server_max_storage":         {Type: "gauge", Labels: jszServerLabels},
	"jetstream_server_total_message_bytes": {Type: "gauge", Labels: jszServerLabels},
	"jetstream_stream_total_bytes":         {Type: "gauge", Labels: jszStreamLabels},
	"jetstream_stream_total_messages":      {Type: "gauge", Labels: jszStreamLabels},
}

var jszStreamLabels = union(jszServerLabels,
	map[string]bool{"account": true, "account_id": true, "stream_name": true, "stream_leader": true, "is_stream_leader": true})

var jszServerLabels = map[string]bool{"server_id": true, "server_name": true, "cluster": true, "domain": true, "meta_leader": true, "is_meta_leader": true}

func union(a, b map[string]bool) map[string]bool {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// ------------------------------------------------------------- deployment

// credentialsDir is where `make credentials` puts the deployment's keyring.
const credentialsDir = "deploy/credentials"

// attackTenant is the tenant of the attack matrix's lender and control loans.
const attackTenant = "acme"

// withCredentials copies the directory of a node's configuration file with
// the keyring's auth.conf beside it, as the compose file mounts it, and
// returns the copy's path of the file.
func withCredentials(t *testing.T, conf string, keys access.Keyring) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Dir(conf))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == access.ServerConfigFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(filepath.Dir(conf), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(keys.Dir, access.ServerConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, access.ServerConfigFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, filepath.Base(conf))
}

// seedOf maps a service's --nats-seed, mounted from deploy/credentials, to
// the test keyring's file of that name.
func seedOf(t *testing.T, s composeService, keys access.Keyring, seed string) string {
	t.Helper()
	host, _, ok := s.mount(seed)
	rel, err := filepath.Rel(filepath.Join(repoRoot, credentialsDir), host)
	if !ok || err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("--nats-seed %s is not mounted from %s", seed, credentialsDir)
	}
	return filepath.Join(keys.Dir, rel)
}

type deployment struct {
	// keys stands for deploy/credentials, which `make credentials` creates
	// and no checkout holds: the same identities, made for this test.
	keys     access.Keyring
	apiKey   string
	compose  composeFile
	byKind   map[string][]string        // sorted service names by kind
	nats     map[string]*server.Options // as compose runs them
	natsConf map[string]string          // each node's configuration file, with auth.conf beside it
	prom     promConfig
	promPath string
	rules    map[string]ruleFile // by repository path
}

func loadDeployment(t *testing.T) *deployment {
	t.Helper()
	d := &deployment{byKind: map[string][]string{}, nats: map[string]*server.Options{}, natsConf: map[string]string{}, rules: map[string]ruleFile{}}
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := interpolate(string(raw))
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if err := strictYAML([]byte(text), &d.compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for k := range d.compose.Extensions {
		if !strings.HasPrefix(k, "x-") {
			t.Errorf("docker-compose.yml: unknown top-level key %q", k)
		}
	}
	if len(d.compose.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	for name, s := range d.compose.Services {
		k := s.kind()
		if k == "" {
			t.Errorf("service %s: image %q is none this test knows how to validate", name, s.Image)
			continue
		}
		d.byKind[k] = append(d.byKind[k], name)
	}
	for _, names := range d.byKind {
		sort.Strings(names)
	}

	// The deployment's credentials (make credentials), made here: every
	// service built from deploy/Dockerfile, and the admin.
	var ids []access.Identity
	for _, name := range d.byKind[kindDunning] {
		ids = append(ids, access.Service(d.compose.Services[name].Build.Args["SERVICE"]))
	}
	// The attack matrix connects as a lender, an agency and every service.
	ids = append(ids, attack.Identities(attackTenant)...)
	d.keys = access.Keyring{Dir: natstest.Keyring(t, app.Grants, ids...)}
	// The cluster's TLS (make credentials: dunctl credentials tls n1 n2 n3),
	// the nodes' certificates also valid for the loopback address the
	// tests dial.
	if _, err := d.keys.IssueTLS(d.byKind[kindNATS], []string{"localhost", "127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	// And the API key make credentials creates.
	var err2 error
	if d.apiKey, _, err2 = apikey.Create(filepath.Join(d.keys.Dir, "api-keys"), apikey.AnyTenant, []apikey.Scope{apikey.ScopeAdmin}); err2 != nil {
		t.Fatal(err2)
	}

	// The NATS nodes' configurations, through their mounts: a copy of the
	// mounted directory with the credentials' auth.conf, where each node
	// mounts it.
	for _, name := range d.byKind[kindNATS] {
		s := d.compose.Services[name]
		f, err := flags(s.Command)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		conf := f["config"]
		if conf == "" {
			conf = f["c"]
		}
		if conf == "" {
			t.Fatalf("service %s: no --config", name)
		}
		host, _, ok := s.mount(conf)
		if !ok || host == "" {
			t.Fatalf("service %s: --config %s is not in a bind mount of the repository", name, conf)
		}
		authIn := path.Join(path.Dir(conf), access.ServerConfigFile)
		if src, _, ok := s.mount(authIn); !ok || src != filepath.Join(repoRoot, credentialsDir, access.ServerConfigFile) {
			t.Fatalf("service %s: %s is not mounted from %s", name, authIn, filepath.Join(credentialsDir, access.ServerConfigFile))
		}
		host = withCredentials(t, host, d.keys)
		d.natsConf[name] = host
		// The configuration reads its addresses and paths from the
		// environment: compose's, with the files it mounts found where
		// make credentials writes them.
		env := maps.Clone(s.Environment)
		for k, v := range env {
			if !strings.HasPrefix(v, "/") {
				continue
			}
			src, _, ok := s.mount(v)
			rel, err := filepath.Rel(filepath.Join(repoRoot, credentialsDir), src)
			if ok && err == nil && !strings.HasPrefix(rel, "..") {
				env[k] = filepath.Join(d.keys.Dir, rel)
			}
		}
		opts, err := parseNATSConfig(t, host, env)
		if err != nil {
			t.Fatalf("service %s: %s: %v", name, host, err)
		}
		d.nats[name] = opts
	}

	// Prometheus and its rule files, through its mounts.
	if n := len(d.byKind[kindProm]); n != 1 {
		t.Fatalf("docker-compose.yml: %d prometheus services, want 1", n)
	}
	ps := d.compose.Services[d.byKind[kindProm][0]]
	var promConf string
	for _, a := range ps.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			promConf = v
		}
	}
	if promConf == "" {
		t.Fatal("prometheus: no --config.file=")
	}
	host, _, ok := ps.mount(promConf)
	if !ok || host == "" {
		t.Fatalf("prometheus: %s is not in a bind mount of the repository", promConf)
	}
	d.promPath = host
	data, err := os.ReadFile(host)
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	if err := strictYAML(data, &d.prom); err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	if len(d.prom.RuleFiles) == 0 {
		t.Fatalf("%s: no rule_files", host)
	}
	for _, rf := range d.prom.RuleFiles {
		if !path.IsAbs(rf) {
			rf = path.Join(path.Dir(promConf), rf)
		}
		host, _, ok := ps.mount(rf)
		if !ok || host == "" {
			t.Fatalf("prometheus: rule file %s is not in a bind mount of the repository", rf)
		}
		data, err := os.ReadFile(host)
		if err != nil {
			t.Fatalf("prometheus: rule file: %v", err)
		}
		var r ruleFile
		if err := strictYAML(data, &r); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		d.rules[host] = r
	}
	return d
}

// natsEnv are the environment variables deploy/nats/cluster.conf reads.
var natsEnv = []string{"NATS_LISTEN", "NATS_MONITOR", "NATS_CLUSTER_LISTEN", "NATS_ROUTES",
	"NATS_STORE_DIR", "NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"}

// parseNATSConfig parses a node's configuration file as nats-server does,
// with env as its environment (only natsEnv's variables; every one must be
// set).
func parseNATSConfig(t *testing.T, conf string, env map[string]string) (*server.Options, error) {
	t.Helper()
	for _, k := range natsEnv {
		v, ok := env[k]
		if !ok {
			return nil, fmt.Errorf("environment: %s is not set", k)
		}
		t.Setenv(k, v)
	}
	return server.ProcessConfigFile(conf)
}

// natsHosts returns the hosts and ports of a --nats value.
func natsHosts(v string) ([]string, []int, error) {
	var hosts []string
	var ports []int
	for _, u := range strings.Split(v, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			return nil, nil, err
		}
		if pu.Scheme != "tls" {
			return nil, nil, fmt.Errorf("%q: scheme must be tls (the nodes serve TLS only)", u)
		}
		p, err := strconv.Atoi(pu.Port())
		if err != nil {
			return nil, nil, fmt.Errorf("%q: no port", u)
		}
		hosts = append(hosts, pu.Hostname())
		ports = append(ports, p)
	}
	return hosts, ports, nil
}

func httpPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// natsServerVersion is the nats-server version go.mod requires: what the
// tests (this one included) and the all-in-one binary run.
func natsServerVersion(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/nats-io/nats-server/v2")
	}
	return string(m[1])
}

func TestCompose(t *testing.T) {
	d := loadDeployment(t)
	cf := d.compose

	// Every service binary but the all-in-one, the operator's CLI and the
	// reference agency client (which runs at the agency's) is deployed, once.
	entries, err := os.ReadDir(filepath.Join(repoRoot, "services"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "dunningd" && e.Name() != "dunctl" && e.Name() != "agency" {
			want = append(want, e.Name())
		}
	}
	if !slices.Equal(d.byKind[kindDunning], want) {
		t.Errorf("services built from deploy/Dockerfile: %v, want every service but dunningd, dunctl and agency: %v", d.byKind[kindDunning], want)
	}

	// Images built from deploy/Dockerfile run a binary of services/.
	days := map[string]bool{}
	for _, name := range d.byKind[kindDunning] {
		s := cf.Services[name]
		b := s.Build
		df := filepath.Join(repoRoot, b.Context, b.Dockerfile)
		if b.Context != "." || b.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("service %s: build %s/%s, want ./deploy/Dockerfile", name, b.Context, b.Dockerfile)
		} else if _, err := os.Stat(df); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		bin := b.Args["SERVICE"]
		if bin != name {
			t.Errorf("service %s: build arg SERVICE=%q, want the service's name", name, bin)
		}
		if _, err := os.Stat(filepath.Join(repoRoot, "services", bin, "main.go")); err != nil {
			t.Errorf("service %s: SERVICE=%s is not a binary of services/: %v", name, bin, err)
		}
		if s.Image != "" || len(s.Entrypoint) > 0 {
			t.Errorf("service %s: set neither image nor entrypoint: the build argument picks the binary", name)
		}
		f, err := flags(s.Command)
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		hosts, ports, err := natsHosts(f["nats"])
		if err != nil {
			t.Errorf("service %s: --nats: %v", name, err)
		}
		for i, h := range hosts {
			o, ok := d.nats[h]
			if !ok {
				t.Errorf("service %s: --nats host %s is not a NATS node of the compose file", name, h)
			} else if o.Port != ports[i] {
				t.Errorf("service %s: --nats %s:%d, but that node listens on %d", name, h, ports[i], o.Port)
			}
		}
		if got := slices.Sorted(slices.Values(hosts)); !slices.Equal(got, d.byKind[kindNATS]) {
			t.Errorf("service %s: --nats names %v, want every node %v (a client must find the cluster when one node is down)", name, got, d.byKind[kindNATS])
		}
		if ca, _, ok := s.mount(f["nats-ca"]); f["nats-ca"] == "" || !ok || ca != filepath.Join(repoRoot, credentialsDir, access.TLSDir, "ca.pem") {
			t.Errorf("service %s: --nats-ca %q is not the deployment's CA certificate (%s/tls/ca.pem)", name, f["nats-ca"], credentialsDir)
		}
		if _, ok := f["replicas"]; ok {
			t.Errorf("service %s: --replicas: a service provisions nothing (make up runs dunctl provision --replicas)", name)
		}
		if _, err := httpPort(f["http"]); err != nil {
			t.Errorf("service %s: --http %q: %v", name, f["http"], err)
		}
		days[f["day"]] = true
	}
	// The admin provisions R3 (make up: dunctl provision --replicas 3), on
	// nodes that need it: without `sync_interval: always`, an acknowledged
	// write lives on one node's page cache unless it is replicated.
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	prov := regexp.MustCompile(`dunctl provision .*--replicas (\d+)`).FindSubmatch(mk)
	if prov == nil {
		t.Error("Makefile: make up runs no dunctl provision --replicas N")
	} else if r, _ := strconv.Atoi(string(prov[1])); r != 3 || r > len(d.nats) {
		t.Errorf("Makefile: dunctl provision --replicas %d, want 3 on %d NATS nodes", r, len(d.nats))
	}
	if len(days) != 1 {
		t.Errorf("the services disagree on --day (%v): DPD and schedules would not match", slices.Collect(maps.Keys(days)))
	}

	// The NATS nodes.
	natsVersion := natsServerVersion(t)
	if len(d.nats) != 3 {
		t.Errorf("%d NATS nodes, want 3", len(d.nats))
	}
	var clusterName string
	for _, name := range d.byKind[kindNATS] {
		s, o := cf.Services[name], d.nats[name]
		if tag := strings.TrimPrefix(s.Image, "nats:"); !strings.HasPrefix(tag, natsVersion) {
			t.Errorf("service %s: image %s, want nats-server %s as in go.mod (what the tests run)", name, s.Image, natsVersion)
		}
		if o.ServerName != name {
			t.Errorf("service %s: server_name %q, want the service's name", name, o.ServerName)
		}
		if !o.JetStream {
			t.Errorf("service %s: JetStream not enabled", name)
		}
		if _, vol, ok := s.mount(o.StoreDir); !ok || vol == "" {
			t.Errorf("service %s: store_dir %q is not on a named volume: the stream would not survive the container", name, o.StoreDir)
		}
		if o.Cluster.Name == "" || (clusterName != "" && o.Cluster.Name != clusterName) {
			t.Errorf("service %s: cluster name %q (others: %q)", name, o.Cluster.Name, clusterName)
		}
		clusterName = o.Cluster.Name
		var routeHosts []string
		for _, r := range o.Routes {
			routeHosts = append(routeHosts, r.Hostname())
			if p, _ := strconv.Atoi(r.Port()); p != d.nats[r.Hostname()].Cluster.Port {
				t.Errorf("service %s: route %s, but that node's cluster port is %d", name, r, d.nats[r.Hostname()].Cluster.Port)
			}
		}
		if sort.Strings(routeHosts); !slices.Equal(routeHosts, d.byKind[kindNATS]) {
			t.Errorf("service %s: routes to %v, want every node %v (JetStream sizes its meta group from them)", name, routeHosts, d.byKind[kindNATS])
		}
		if o.HTTPPort <= 0 {
			t.Errorf("service %s: no monitoring port", name)
		}
		// TLS: clients verify the node; routes verify each other.
		if o.TLSConfig == nil {
			t.Errorf("service %s: clients do not speak TLS to the node", name)
		}
		if c := o.Cluster.TLSConfig; c == nil || c.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Errorf("service %s: routes are not authenticated by certificate (cluster tls verify: true)", name)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			rel, ok := strings.CutPrefix(src, "./"+credentialsDir+"/")
			if !ok {
				continue
			}
			// A file or a whole directory: either way, not the CA's key.
			_ = filepath.WalkDir(filepath.Join(d.keys.Dir, rel), func(p string, _ os.DirEntry, err error) error {
				if err == nil && filepath.Base(p) == "ca-key.pem" {
					t.Errorf("service %s: %s mounts the CA's private key: a node needs only its own key", name, v)
				}
				return nil
			})
		}
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if c, _ := strconv.Atoi(parts[len(parts)-1]); c == o.HTTPPort || c == o.Cluster.Port {
				t.Errorf("service %s: publishes %s: the monitoring and route ports stay on the compose network", name, p)
			}
		}
		if s.Healthcheck == nil || !slices.Contains(s.Healthcheck.Test, fmt.Sprintf("http://127.0.0.1:%d/healthz", o.HTTPPort)) {
			t.Errorf("service %s: health check must probe the monitoring port's /healthz (%d)", name, o.HTTPPort)
		}
		if s.StopSignal == "SIGUSR2" {
			grace, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil || grace <= o.LameDuckDuration {
				t.Errorf("service %s: stop_grace_period %q must exceed lame_duck_duration %s, or the node is killed mid-handover", name, s.StopGracePeriod, o.LameDuckDuration)
			}
		}
	}

	// One exporter per node, on that node's monitoring port.
	exported := map[string]bool{}
	for _, name := range d.byKind[kindExporter] {
		s := cf.Services[name]
		if len(s.Command) == 0 {
			t.Errorf("service %s: no command", name)
			continue
		}
		u, err := url.Parse(s.Command[len(s.Command)-1])
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		o, ok := d.nats[u.Hostname()]
		if !ok {
			t.Errorf("service %s: polls %s, not a NATS node", name, u)
			continue
		}
		if p, _ := strconv.Atoi(u.Port()); p != o.HTTPPort {
			t.Errorf("service %s: polls port %s, but %s monitors on %d", name, u.Port(), u.Hostname(), o.HTTPPort)
		}
		if exported[u.Hostname()] {
			t.Errorf("node %s has two exporters", u.Hostname())
		}
		exported[u.Hostname()] = true
		for _, a := range s.Command[:len(s.Command)-1] {
			if !strings.HasPrefix(a, "-") {
				t.Errorf("service %s: argument %q before the URL", name, a)
			}
		}
	}
	for _, n := range d.byKind[kindNATS] {
		if !exported[n] {
			t.Errorf("NATS node %s has no exporter", n)
		}
	}

	// Mounts, volumes, ports and dependencies.
	used := map[string]bool{}
	published := map[string]string{}
	for name, s := range cf.Services {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("service %s: volume %q: want source:target", name, v)
				continue
			}
			if rel, ok := strings.CutPrefix(parts[0], "./"+credentialsDir+"/"); ok {
				// Made by make credentials, never committed: the test's keyring has it.
				if _, err := os.Stat(filepath.Join(d.keys.Dir, rel)); err != nil {
					t.Errorf("service %s: bind mount of a credential make credentials does not make: %v", name, err)
				}
			} else if strings.HasPrefix(parts[0], ".") {
				if _, err := os.Stat(filepath.Join(repoRoot, parts[0])); err != nil {
					t.Errorf("service %s: bind mount: %v", name, err)
				}
			} else if _, ok := cf.Volumes[parts[0]]; !ok {
				t.Errorf("service %s: volume %s is not declared", name, parts[0])
			} else {
				used[parts[0]] = true
			}
		}
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			hostPort := strings.Join(parts[:len(parts)-1], ":")
			if other, dup := published[hostPort]; dup {
				t.Errorf("services %s and %s both publish %s", name, other, hostPort)
			}
			published[hostPort] = name
		}
		deps, err := s.dependsOn()
		if err != nil {
			t.Errorf("service %s: depends_on: %v", name, err)
		}
		for dep, cond := range deps {
			target, ok := cf.Services[dep]
			switch {
			case !ok:
				t.Errorf("service %s: depends on unknown service %s", name, dep)
			case cond == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("service %s: waits for %s to be healthy, which has no health check", name, dep)
			case cond != "service_started" && cond != "service_healthy" && cond != "service_completed_successfully":
				t.Errorf("service %s: depends_on %s: condition %q", name, dep, cond)
			}
		}
	}
	for v := range cf.Volumes {
		if !used[v] {
			t.Errorf("volume %s is declared but not used", v)
		}
	}
}

// ---------------------------------------------------------------- Dockerfile

// TestDockerfile checks what can be checked of deploy/Dockerfile without an
// engine: the stages, the build command, a non-root user and an entrypoint
// that exists for every SERVICE.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	var instrs [][2]string
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "#") || (trim == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trim, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trim)
		if f := strings.Fields(cur.String()); len(f) > 0 {
			instrs = append(instrs, [2]string{strings.ToUpper(f[0]), strings.TrimSpace(strings.TrimPrefix(cur.String(), f[0]))})
		}
		cur.Reset()
	}
	var froms []string
	var lastUser, entrypoint, serviceDefault string
	var built bool
	for _, in := range instrs {
		switch in[0] {
		case "FROM":
			froms = append(froms, in[1])
			lastUser = ""
		case "RUN":
			if strings.Contains(in[1], "go build") && strings.Contains(in[1], "-o /out/ ./services/...") {
				built = true
			}
		case "USER":
			lastUser = in[1]
		case "ENTRYPOINT":
			entrypoint = in[1]
		case "ARG":
			if v, ok := strings.CutPrefix(in[1], "SERVICE="); ok {
				serviceDefault = v
			}
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26 ") {
		t.Errorf("stages %q: want a golang:1.26 build stage and a runtime stage", froms)
	}
	if !built {
		t.Error("no RUN go build -o /out/ ./services/...")
	}
	if u := strings.SplitN(lastUser, ":", 2)[0]; u == "" || u == "root" || u == "0" {
		t.Errorf("runtime stage runs as %q, want a non-root user", lastUser)
	}
	if !strings.HasPrefix(entrypoint, "[") {
		t.Errorf("ENTRYPOINT %s: want the exec form (signals reach the service)", entrypoint)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "services", serviceDefault, "main.go")); serviceDefault == "" || err != nil {
		t.Errorf("ARG SERVICE default %q is not a service", serviceDefault)
	}
	// go.mod's go version must be buildable by the image's toolchain line.
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod); m == nil || !strings.HasPrefix(froms[0], "golang:"+string(m[1])+" ") {
		t.Errorf("go.mod says go %s; the build stage is %q", m, froms[0])
	}
}

// -------------------------------------------------------------- prometheus

func TestPrometheus(t *testing.T) {
	d := loadDeployment(t)
	p := d.prom
	scrape, err := parsePromDuration(p.Global.ScrapeInterval)
	if err != nil {
		t.Fatalf("scrape_interval: %v", err)
	}
	if _, err := parsePromDuration(p.Global.EvaluationInterval); err != nil {
		t.Fatalf("evaluation_interval: %v", err)
	}
	jobs := map[string]bool{}
	for _, j := range p.ScrapeConfigs {
		if jobs[j.JobName] || j.JobName == "" {
			t.Errorf("job name %q empty or repeated", j.JobName)
		}
		jobs[j.JobName] = true
		if j.MetricsPath != "" && j.MetricsPath != "/metrics" {
			t.Errorf("job %s: metrics_path %s; the services serve /metrics", j.JobName, j.MetricsPath)
		}
	}

	// Every target is a compose service, on the port it listens on; every
	// dunning service and every exporter is scraped.
	targets, err := p.targets()
	if err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	dnsNames := map[string][]string{} // job -> names, for the rules
	for _, tg := range targets {
		s, ok := d.compose.Services[tg.Host]
		if !ok {
			t.Errorf("job %s: target host %s is not a compose service", tg.Job, tg.Host)
			continue
		}
		scraped[tg.Host] = true
		dnsNames[tg.Job] = append(dnsNames[tg.Job], tg.Host)
		switch s.kind() {
		case kindDunning:
			f, _ := flags(s.Command)
			addr, flag := f["http"], "--http"
			if f["metrics-http"] != "" {
				addr, flag = f["metrics-http"], "--metrics-http"
			}
			if port, err := httpPort(addr); err != nil || port != tg.Port {
				t.Errorf("job %s: scrapes %s:%d, but the service serves /metrics on %s %s", tg.Job, tg.Host, tg.Port, flag, addr)
			}
			// The API's address is the lenders': /metrics is elsewhere.
			if slices.Contains(s.Command, "--api-keys") && f["metrics-http"] == "" {
				t.Errorf("service %s serves the API and /metrics on one address: give it --metrics-http", tg.Host)
			}
		case kindExporter:
			f := map[string]string{}
			for _, a := range s.Command {
				if k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok {
					f[k] = v
				}
			}
			want := 7777 // the exporter's default -port
			if v := f["port"] + f["p"]; v != "" {
				want, _ = strconv.Atoi(v)
			}
			if tg.Port != want {
				t.Errorf("job %s: scrapes %s:%d, the exporter listens on %d", tg.Job, tg.Host, tg.Port, want)
			}
		default:
			t.Errorf("job %s: target %s is a %s service, which serves no Prometheus metrics", tg.Job, tg.Host, s.kind())
		}
	}
	for _, k := range []string{kindDunning, kindExporter} {
		for _, n := range d.byKind[k] {
			if !scraped[n] {
				t.Errorf("service %s is not scraped", n)
			}
		}
	}

	// Rules: structure, templates, windows, job and service names.
	names := map[string]bool{}
	defer func() { checkRuleTests(t, d, names) }()
	for file, rf := range d.rules {
		if len(rf.Groups) == 0 {
			t.Errorf("%s: no groups", file)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				checkRuleStatic(t, r, names, scrape, jobs, dnsNames)
				// The streams' sizes are declared in topology: the
				// alerts' divisors must be them.
				if limit, ok := map[string]int{"DunningDeadLettersFilling": topology.DLQMaxBytes, "DunningIntakeFilling": topology.IntakeMaxBytes}[r.Alert]; ok &&
					!strings.Contains(r.Expr, "/ "+strconv.Itoa(limit)+" ") {
					t.Errorf("alert %s: %q does not divide by its stream's limit in topology (%d)", r.Alert, r.Expr, limit)
				}
			}
		}
	}
	if !names["DunningDeadLettersFilling"] || !names["DunningIntakeFilling"] || !names["NATSStorageFilling"] {
		t.Error("rules.yml: the storage alerts (dead letters before they are dropped, JetStream store at 80 %) are missing")
	}
}

// ruleTests is the part of a promtool rule test file read here.
type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			AlertName string `yaml:"alertname"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// ruleTestsPath is the promtool unit test file of rules.yml.
var ruleTestsPath = filepath.Join(repoRoot, "deploy", "prometheus", "rules_test.yml")

// checkRuleTests checks that rules_test.yml tests the deployed rule files
// and every alert in them (promtool runs the tests: TestPromtool).
func checkRuleTests(t *testing.T, d *deployment, alerts map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(ruleTestsPath)
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.Unmarshal(data, &rt); err != nil {
		t.Fatalf("%s: %v", ruleTestsPath, err)
	}
	var files []string
	for _, f := range rt.RuleFiles {
		files = append(files, filepath.Join(filepath.Dir(ruleTestsPath), f))
	}
	if got, want := slices.Sorted(slices.Values(files)), slices.Sorted(maps.Keys(d.rules)); !slices.Equal(got, want) {
		t.Errorf("%s tests rule files %v, Prometheus loads %v", ruleTestsPath, got, want)
	}
	tested := map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			tested[a.AlertName] = true
		}
	}
	for a := range alerts {
		if !tested[a] {
			t.Errorf("alert %s has no test in %s", a, ruleTestsPath)
		}
	}
}

// TestPromtool runs promtool, when it is on PATH, on the Prometheus
// configuration, the rules and their unit tests (rules_test.yml). With
// DUNNING_REQUIRE_PROMTOOL=1 (make test sets it) a missing promtool is a
// failure, not a skip.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("DUNNING_REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("promtool is not on PATH, and DUNNING_REQUIRE_PROMTOOL=1 requires it (make promtool installs it into ./bin): %v", err)
		}
		t.Skip("promtool is not on PATH (make promtool installs it into ./bin)")
	}
	d := loadDeployment(t)
	// The configuration names rule files by their path in the container:
	// check a copy that names them by their path here.
	raw, err := os.ReadFile(d.promPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var files []any
	for f := range d.rules {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, abs)
	}
	doc["rule_files"] = files
	conf, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("check", "config", confPath)
	run(append([]string{"check", "rules", "--lint=all"}, slices.Collect(maps.Keys(d.rules))...)...)
	run("test", "rules", ruleTestsPath)
}

// templateFuncs stand in for Prometheus' template functions, so that the
// annotations parse and execute here.
var templateFuncs = template.FuncMap{
	"humanize": fmt.Sprint, "humanize1024": fmt.Sprint, "humanizeDuration": fmt.Sprint,
	"humanizePercentage": fmt.Sprint, "humanizeTimestamp": fmt.Sprint, "printf": fmt.Sprintf,
	"title": strings.ToTitle, "toUpper": strings.ToUpper, "toLower": strings.ToLower,
}

func checkRuleStatic(t *testing.T, r rule, names map[string]bool, scrape time.Duration, jobs map[string]bool, dnsNames map[string][]string) {
	t.Helper()
	name := r.name()
	if (r.Alert == "") == (r.Record == "") {
		t.Errorf("rule %q: exactly one of alert and record", name)
		return
	}
	if names[name] {
		t.Errorf("rule %s: name repeated", name)
	}
	names[name] = true
	if r.Alert != "" {
		if !regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`).MatchString(r.Alert) {
			t.Errorf("alert %s: want a CamelCase name", r.Alert)
		}
		if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" && sev != "info" {
			t.Errorf("alert %s: severity %q", name, sev)
		}
		if r.Annotations["summary"] == "" {
			t.Errorf("alert %s: no summary", name)
		}
	}
	for _, d := range []string{r.For, r.KeepFiringFor} {
		if d != "" {
			if _, err := parsePromDuration(d); err != nil {
				t.Errorf("rule %s: %v", name, err)
			}
		}
	}
	// Annotations are Go templates with $labels and $value, as Prometheus expands them.
	for k, a := range r.Annotations {
		tmpl, err := template.New(k).Option("missingkey=zero").Funcs(templateFuncs).
			Parse("{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}" + a)
		if err != nil {
			t.Errorf("rule %s: annotation %s: %v", name, k, err)
			continue
		}
		data := struct {
			Labels, ExternalLabels map[string]string
			Value                  float64
		}{Labels: map[string]string{"consumer": "intake"}, Value: 1}
		if err := tmpl.Execute(new(bytes.Buffer), data); err != nil {
			t.Errorf("rule %s: annotation %s: %v", name, k, err)
		}
	}
	q, err := parsePromQL(r.Expr)
	if err != nil {
		t.Errorf("rule %s: expr: %v", name, err)
		return
	}
	if len(q.Selectors) == 0 {
		t.Errorf("rule %s: expr selects nothing", name)
	}
	for _, s := range q.Selectors {
		// rate() needs at least two samples, and some slack for a missed scrape.
		if s.Range != 0 && s.Range < 4*scrape {
			t.Errorf("rule %s: %s[%s] is under 4 scrape intervals (%s)", name, s.Metric, s.Range, scrape)
		}
		if j, ok := s.Matchers["job"]; ok && !jobs[j] {
			t.Errorf("rule %s: job %q is no job of prometheus.yml", name, j)
		}
	}
	// label_replace(vector(1), "service", "<name>", ...) lists expected
	// services: it must be the dunning job's targets exactly.
	var listed []string
	for _, m := range regexp.MustCompile(`label_replace\(\s*vector\(1\)\s*,\s*"service"\s*,\s*"([^"]+)"`).FindAllStringSubmatch(r.Expr, -1) {
		listed = append(listed, m[1])
	}
	if len(listed) > 0 {
		want := slices.Sorted(slices.Values(dnsNames["dunning"]))
		if sort.Strings(listed); !slices.Equal(listed, want) {
			t.Errorf("rule %s: lists services %v, but job dunning scrapes %v", name, listed, want)
		}
	}
}

// ---------------------------------------------------------- the real thing

// TestDeployment runs the deployment, minus Docker: the cluster from the
// NATS configuration files (in process; their addresses and directories
// from the environment, on loopback) and the services with their compose
// command lines; then the attack matrix against it.
func TestDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster and the seven services")
	}
	d := loadDeployment(t)
	nodes := loopbackNodes(t, d)
	startCluster(t, d, nodes)
	exercise(t, d, nodes)
}

// TestDeploymentProcesses is TestDeployment on real nats-server processes
// started from copies of the shipped configuration files, with only the
// environment set (make test-cluster, which builds nats-server).
func TestDeploymentProcesses(t *testing.T) {
	bin := os.Getenv("NATS_SERVER_BIN")
	if bin == "" {
		t.Skip("NATS_SERVER_BIN is not set (make test-cluster builds nats-server and runs this)")
	}
	d := loadDeployment(t)
	nodes := loopbackNodes(t, d)
	startProcesses(t, d, bin, nodes)
	exercise(t, d, nodes)
}

// node is one NATS node of the deployment run on loopback.
type node struct {
	name                    string
	env                     map[string]string // what cluster.conf reads
	client, monitor, routes string            // host:port
}

// loopbackNodes gives each node of the compose file free loopback ports, a
// store directory of its own and its certificate from the test's keyring.
func loopbackNodes(t *testing.T, d *deployment) []node {
	t.Helper()
	names := d.byKind[kindNATS]
	ports := freePorts(t, 3*len(names))
	var nodes []node
	var routes []string
	for i, name := range names {
		n := node{name: name,
			client:  fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			monitor: fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			routes:  fmt.Sprintf("127.0.0.1:%d", ports[3*i+2])}
		routes = append(routes, "nats-route://"+n.routes)
		nodes = append(nodes, n)
	}
	for i := range nodes {
		f := d.keys.TLS(nodes[i].name)
		nodes[i].env = map[string]string{
			"NATS_LISTEN":         nodes[i].client,
			"NATS_MONITOR":        nodes[i].monitor,
			"NATS_CLUSTER_LISTEN": nodes[i].routes,
			"NATS_ROUTES":         "[" + strings.Join(routes, ", ") + "]",
			"NATS_STORE_DIR":      t.TempDir(),
			"NATS_TLS_CA":         f.CA,
			"NATS_TLS_CERT":       f.Cert,
			"NATS_TLS_KEY":        f.Key,
		}
	}
	return nodes
}

func clientURLs(nodes []node) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "tls://"+n.client)
	}
	return strings.Join(urls, ",")
}

// startCluster starts the nodes in process from their configuration files,
// parsed with each node's environment, and waits for them (healthy).
func startCluster(t *testing.T, d *deployment, nodes []node) {
	t.Helper()
	var opts []*server.Options
	for _, n := range nodes {
		o, err := parseNATSConfig(t, d.natsConf[n.name], n.env)
		if err != nil {
			t.Fatalf("node %s: %v", n.name, err)
		}
		o.NoSigs, o.NoLog = true, true
		opts = append(opts, o)
	}
	natstest.Cluster(t, opts...)
	waitHealthy(t, nodes)
}

// startProcesses runs each node as a nats-server process on a copy of its
// configuration file (auth.conf beside it), with the environment set, and
// waits for them (healthy). A node's output is logged if the test fails.
func startProcesses(t *testing.T, d *deployment, bin string, nodes []node) {
	t.Helper()
	for _, n := range nodes {
		cmd := exec.Command(bin, "--config", d.natsConf[n.name])
		cmd.Env = os.Environ()
		for k, v := range n.env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("nats-server %s:\n%s", n.name, out.String())
			}
		})
	}
	waitHealthy(t, nodes)
}

// waitHealthy waits until every node's monitoring /healthz answers 200 (the
// compose health check: JetStream enabled and current) and the cluster has
// a meta leader with every node a peer.
func waitHealthy(t *testing.T, nodes []node) {
	t.Helper()
	for _, n := range nodes {
		natstest.CheckFor(t, 60*time.Second, 50*time.Millisecond, described("node "+n.name+" healthy", func() error {
			resp, err := http.Get("http://" + n.monitor + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/healthz: %s", resp.Status)
			}
			return nil
		}))
	}
	// Then the meta group: one leader every node agrees on, which sees every
	// other node as a current, online peer (before that, creating an R3
	// stream fails: "no suitable peers for placement, peer offline").
	type peer struct {
		Name    string `json:"name"`
		Current bool   `json:"current"`
		Offline bool   `json:"offline"`
	}
	type jsz struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Size     int    `json:"cluster_size"`
			Replicas []peer `json:"replicas"`
		} `json:"meta_cluster"`
	}
	get := func(n node) (jsz, error) {
		var j jsz
		resp, err := http.Get("http://" + n.monitor + "/jsz")
		if err != nil {
			return j, err
		}
		defer resp.Body.Close()
		return j, json.NewDecoder(resp.Body).Decode(&j)
	}
	natstest.CheckFor(t, 60*time.Second, 50*time.Millisecond, described("a meta leader every node agrees on, with every other node a current peer", func() error {
		leaders := map[string]bool{}
		for _, n := range nodes {
			j, err := get(n)
			if err != nil {
				return err
			}
			if j.Meta == nil || j.Meta.Leader == "" {
				return fmt.Errorf("%s knows no meta leader", n.name)
			}
			if j.Meta.Size != len(nodes) {
				return fmt.Errorf("%s: meta group of %d", n.name, j.Meta.Size)
			}
			leaders[j.Meta.Leader] = true
		}
		if len(leaders) != 1 {
			return fmt.Errorf("the nodes disagree on the meta leader: %v", slices.Collect(maps.Keys(leaders)))
		}
		for _, n := range nodes {
			if !leaders[n.name] {
				continue
			}
			j, err := get(n)
			if err != nil {
				return err
			}
			if j.Meta == nil || len(j.Meta.Replicas) != len(nodes)-1 {
				return fmt.Errorf("the leader %s sees peers %v", n.name, j.Meta)
			}
			for _, p := range j.Meta.Replicas {
				if !p.Current || p.Offline {
					return fmt.Errorf("the leader %s sees %s not current (offline %v)", n.name, p.Name, p.Offline)
				}
			}
			return nil
		}
		return errors.New("the meta leader is not a node of this deployment")
	}))
}

// exercise runs the deployment on a started cluster: the transport's
// boundaries, the admin's provisioning, the services with their compose
// command lines, traffic, the attack matrix, and every metric the alert
// rules use.
func exercise(t *testing.T, d *deployment, nodes []node) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	urls := clientURLs(nodes)

	// The transport: clients speak TLS only, and the route port admits
	// only a peer presenting a node certificate of the deployment's CA.
	admin, err := d.keys.Option(access.Admin)
	if err != nil {
		t.Fatal(err)
	}
	checkPlainClient(t, nodes[0])
	checkRoutePort(t, d, nodes[0])
	caOpt, err := access.ClientTLS(d.keys.CAFile())
	if err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(urls, admin, caOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The admin provisions (make up runs dunctl provision); the services
	// only wait for it.
	topo := topology.DefaultTopology()
	topo.Replicas = 3
	if err := topo.Provision(ctx, js, pipeline.Consumers(1)); err != nil {
		t.Fatal(err)
	}

	// The services, in process, with the compose command lines.
	addrs, metricsAddrs := runServices(t, ctx, d, urls)
	// Where a service serves /metrics on an address of its own, its
	// API's address does not answer it.
	for name, a := range metricsAddrs {
		if a == addrs[name] {
			continue
		}
		resp, err := http.Get("http://" + addrs[name] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: /metrics on the API's address: %s, want 404", name, resp.Status)
		}
	}
	t.Logf("%d services ready after %s", len(addrs), time.Since(start).Round(time.Millisecond))

	// The admin provisioned R3 streams and consumers, with a leader and
	// two current replicas each.
	for _, sc := range topology.DefaultTopology().StreamConfigs() {
		natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, described("stream "+sc.Name+" with 3 current replicas", func() error {
			st, err := js.Stream(ctx, sc.Name)
			if err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			return replicasCurrent(info.Config.Replicas, info.Cluster)
		}))
	}
	for _, c := range pipeline.Consumers(1) {
		natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, described("consumer "+c.Name+" with 3 current replicas", func() error {
			cons, err := js.Consumer(ctx, c.Stream, c.Name)
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			return replicasCurrent(info.Config.Replicas, info.Cluster)
		}))
	}

	// Traffic: lender events over HTTP (the overdue stage consumes them;
	// two are control loans due in a year, for the attack matrix) and an
	// undecodable one over NATS (the gateway's intake dead-letters it).
	post := func(loan string, due time.Time) {
		t.Helper()
		body := fmt.Sprintf(`{"installmentDue": {"tenantId": %q, "loanId": %q, "installmentId": "1",
			"amount": {"currency": "CNY", "minorUnits": "120000"}, "dueAt": %q,
			"timeZone": "Asia/Shanghai", "contactRef": "crm-77"}}`, attackTenant, loan, due.UTC().Format(time.RFC3339))
		req, err := http.NewRequest(http.MethodPost, "http://"+addrs["gateway"]+"/v1/events", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+d.apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /v1/events: %s, want 202", resp.Status)
		}
	}
	post("L-1001", time.Now())
	controls := []string{"L-ctl-1", "L-ctl-2"}
	for _, l := range controls {
		post(l, time.Now().Add(365*24*time.Hour))
	}
	if _, err := js.Publish(ctx, topology.IntakeSubject(attackTenant, "L-2002"), []byte("not a lender event")); err != nil {
		t.Fatal(err)
	}

	// Acceptance 1 of the trust boundaries, on the cluster the shipped
	// files configure: the attack matrix, and the control loans unchanged.
	log := loanlog.New(nc, js)
	before := attack.Take(t, log, attackTenant, controls, 2) // the installment and its timer
	tg := attack.Target{URL: urls, Keys: d.keys, Options: []nats.Option{caOpt}, Tenant: attackTenant, Loan: controls[0]}
	n := attack.Run(t, tg)
	lender, _ := attack.Connect(t, tg, access.Lender(attackTenant))
	ljs, err := jetstream.New(lender)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := ljs.Publish(ctx, topology.IntakeSubject(attackTenant, "L-3003"), []byte("a lender's own intake")); err != nil || ack.Stream != topology.StreamIntake {
		t.Errorf("the lender's own intake: %v, %v; want an ack from %s", ack, err, topology.StreamIntake)
	}
	before.Unchanged(t, log, attackTenant)
	t.Logf("%d attacks refused after %s", n, time.Since(start).Round(time.Millisecond))

	// Every service's /metrics, once the traffic shows in them.
	metrics := metricSet{}
	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, described("traffic in the metrics", func() error {
		metrics = metricSet{}
		for name, addr := range metricsAddrs {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				return err
			}
			err = parseExposition(resp.Body, metrics)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("%s /metrics: %w", name, err)
			}
		}
		for _, m := range []string{"dunning_dead_letters_total", "dunning_lender_events_total",
			"dunning_router_subscriber_messages_received_total", "dunning_router_handler_execution_time_seconds_bucket"} {
			if metrics[m] == nil || len(metrics[m].Labels) == 0 {
				return fmt.Errorf("%s not exported yet", m)
			}
		}
		return nil
	}))
	// Counter vectors export nothing until their first increment (a log
	// conflict needs a race): take those from the registry pipeline.NewMetrics
	// fills, each child touched once.
	for name, m := range pipelineMetrics(t) {
		if metrics[name] == nil {
			metrics[name] = m
		}
	}
	targetLabels := d.prom.targetLabels()
	for file, rf := range d.rules {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				checkRuleMetrics(t, file, r, metrics, targetLabels)
			}
		}
	}
	for _, r := range dashboardRules(t) {
		checkRuleMetrics(t, dashboardPath, r, metrics, targetLabels)
	}

	cancel()
	t.Logf("done after %s", time.Since(start).Round(time.Millisecond))
}

// checkPlainClient shows that a node's client port requires TLS: its INFO
// says so, and a client speaking the protocol in the clear gets no answer
// but a closed connection.
func checkPlainClient(t *testing.T, n node) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.client, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("client port: INFO %q (%v), want tls_required", info, err)
	}
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
		return // closed already
	}
	if line, err := r.ReadString('\n'); err == nil {
		t.Errorf("client port: a client in the clear got %q, want the connection closed", line)
	}
}

// checkRoutePort shows that a node's route port completes no TLS session
// without a node certificate of the deployment's CA (a process without one
// cannot join the cluster), and does with one (so the refusal is the
// certificate's, not a wrong port's).
func checkRoutePort(t *testing.T, d *deployment, n node) {
	t.Helper()
	caPEM, err := os.ReadFile(d.keys.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dial := func(certs []tls.Certificate) (string, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.routes,
			&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: certs, MinVersion: tls.VersionTLS12})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString(' ')
		return line, err
	}
	if got, err := dial(nil); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("route port without a certificate: read %q, %v; want the handshake refused (certificate required)", got, err)
	}
	f := d.keys.TLS(d.byKind[kindNATS][1])
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dial([]tls.Certificate{cert}); err != nil || got != "INFO " {
		t.Errorf("route port with a node certificate: read %q, %v; want the route's INFO", got, err)
	}
}

// replicasCurrent reports whether a stream or consumer has its replicas,
// a leader and every follower current.
func replicasCurrent(want int, ci *jetstream.ClusterInfo) error {
	if want != 3 {
		return fmt.Errorf("replicas %d, want 3", want)
	}
	if ci == nil || ci.Leader == "" {
		return errors.New("no leader")
	}
	if len(ci.Replicas) != want-1 {
		return fmt.Errorf("%d followers", len(ci.Replicas))
	}
	for _, r := range ci.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("follower %s not current", r.Name)
		}
	}
	return nil
}

// serviceOptions mirrors services/<name>/main.go: what each binary runs.
func serviceOptions(name string) (app.Options, bool) { return app.Service(name) }

// runServices runs every dunning service of the compose file in process
// with its compose command line, --nats, --http and --metrics-http
// replaced, and returns their HTTP addresses once each answers /readyz,
// and where each serves /metrics.
//
// The gateway starts first and the stages once it is ready. Every service
// provisions the whole topology at startup, and two clients creating the
// same R3 stream at the same instant can both get no answer (measured on
// v2.15.3 here, a known NATS behaviour, nats-server#3677, nats.go#949):
// topology.Provision then waits out its 30 s timeout and the service exits.
// Updating existing streams concurrently is fine. In compose, restart:
// unless-stopped recovers from that; this test starts in order so as to
// stay fast and deterministic.
func runServices(t *testing.T, ctx context.Context, d *deployment, natsURL string) (addrs, metricsAddrs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	var first, rest []string
	for _, name := range d.byKind[kindDunning] {
		if d.compose.Services[name].Build.Args["SERVICE"] == "gateway" {
			first = append(first, name)
		} else {
			rest = append(rest, name)
		}
	}
	addrs, metricsAddrs = map[string]string{}, map[string]string{}
	var mu sync.Mutex
	for _, batch := range [][]string{first, rest} {
		type ready struct{ name, addr string }
		readyc := make(chan ready, len(batch))
		errc := make(chan error, len(batch))
		for _, name := range batch {
			s := d.compose.Services[name]
			o, ok := serviceOptions(s.Build.Args["SERVICE"])
			if !ok {
				t.Fatalf("service %s: no such binary", name)
			}
			o.Ready = func(addr string) { readyc <- ready{name, addr} }
			f, err := flags(s.Command)
			if err != nil {
				t.Fatal(err)
			}
			o.MetricsReady = func(addr string) {
				mu.Lock()
				defer mu.Unlock()
				metricsAddrs[name] = addr
			}
			args := append(slices.Clone(s.Command), "--nats", natsURL, "--http", "127.0.0.1:0", "--log-level", "error",
				"--nats-seed", seedOf(t, s, d.keys, f["nats-seed"]), "--nats-ca", seedOf(t, s, d.keys, f["nats-ca"]))
			if f["api-keys"] != "" {
				args = append(args, "--api-keys", seedOf(t, s, d.keys, f["api-keys"]))
			}
			if f["metrics-http"] != "" {
				args = append(args, "--metrics-http", "127.0.0.1:0")
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := app.Run(ctx, args, o); err != nil && ctx.Err() == nil {
					errc <- fmt.Errorf("service %s (%q): %w", name, s.Command, err)
				}
			}()
		}
		for n := 0; n < len(batch); n++ {
			select {
			case r := <-readyc:
				addrs[r.name] = r.addr
			case err := <-errc:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("services not serving: only %v", addrs)
			}
		}
		for _, name := range batch {
			natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, described(name+" ready", func() error {
				resp, err := http.Get("http://" + addrs[name] + "/readyz")
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("/readyz: %s", resp.Status)
				}
				return nil
			}))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for name, a := range addrs {
		if metricsAddrs[name] == "" {
			metricsAddrs[name] = a
		}
	}
	return addrs, metricsAddrs
}

// recorder is a Registerer that keeps what is registered.
type recorder struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// pipelineMetrics is every metric pipeline.NewMetrics registers, each vector's
// child touched once so that it is gathered with its labels.
func pipelineMetrics(t *testing.T) metricSet {
	t.Helper()
	reg := &recorder{Registry: prometheus.NewRegistry()}
	pipeline.NewMetrics(reg)
	for _, c := range reg.collectors {
		touched := false
		for n := 0; n <= 8 && !touched; n++ {
			vals := make([]string, n)
			var err error
			switch v := c.(type) {
			case *prometheus.CounterVec:
				_, err = v.GetMetricWithLabelValues(vals...)
			case *prometheus.GaugeVec:
				_, err = v.GetMetricWithLabelValues(vals...)
			case *prometheus.HistogramVec:
				_, err = v.GetMetricWithLabelValues(vals...)
			case *prometheus.SummaryVec:
				_, err = v.GetMetricWithLabelValues(vals...)
			default:
				touched = true // not a vector: always gathered
			}
			touched = touched || err == nil
		}
		if !touched {
			t.Fatalf("cannot instantiate %T", c)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ms := metricSet{}
	for _, f := range families {
		var labels []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		ms.addFamily(f.GetName(), strings.ToLower(f.GetType().String()), labels)
	}
	return ms
}

// rangeFuncs take a counter's range: anything else (a gauge) is a mistake.
var rangeFuncs = map[string]bool{"rate": true, "irate": true, "increase": true, "resets": true}

// checkRuleMetrics checks that every metric a rule selects is exported
// (by the services, or by the exporters Prometheus scrapes), with the
// labels it matches and groups by, and that rate() and the like take counters.
func checkRuleMetrics(t *testing.T, file string, r rule, exported metricSet, targetLabels map[string]bool) {
	t.Helper()
	q, err := parsePromQL(r.Expr)
	if err != nil {
		t.Errorf("%s: rule %s: %v", file, r.name(), err)
		return
	}
	known := map[string]bool{}
	for l := range targetLabels {
		known[l] = true
	}
	for _, s := range q.Selectors {
		m := exported[s.Metric]
		if m == nil {
			m = exporterMetrics[s.Metric]
		}
		if m == nil {
			t.Errorf("%s: rule %s: metric %s is exported by no service", file, r.name(), s.Metric)
			continue
		}
		for l := range m.Labels {
			known[l] = true
		}
		for l := range s.Matchers {
			if !m.Labels[l] && !targetLabels[l] {
				t.Errorf("%s: rule %s: %s has no label %q (it has %v, and targets %v)", file, r.name(), s.Metric, l,
					slices.Sorted(maps.Keys(m.Labels)), slices.Sorted(maps.Keys(targetLabels)))
			}
		}
		if rangeFuncs[s.Func] {
			switch m.Type {
			case "counter", "histogram_bucket", "histogram_count", "histogram_sum", "summary_count", "summary_sum":
			default:
				t.Errorf("%s: rule %s: %s(%s) on a %s", file, r.name(), s.Func, s.Metric, m.Type)
			}
		}
		if s.Func == "histogram_quantile" {
			t.Errorf("%s: rule %s: histogram_quantile needs rate() of the buckets", file, r.name())
		}
	}
	for _, l := range q.Grouping {
		if !known[l] {
			t.Errorf("%s: rule %s: groups by %q, a label of none of its metrics", file, r.name(), l)
		}
	}
}

// --------------------------------------------------------------- helpers

// described annotates the errors of a condition polled by natstest.CheckFor
// with what is being waited for.
func described(what string, f func() error) func() error {
	return func() error {
		if err := f(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		return nil
	}
}

// freePorts reserves n distinct free TCP ports on the loopback interface.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
