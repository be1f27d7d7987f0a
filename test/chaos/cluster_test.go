package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/natstest"
	"github.com/opendunning/dunning/pkg/topology"
)

// TestChaosCluster is the chaos run on a three-node cluster of nats-server
// processes started from the shipped configuration files (deploy/nats,
// only the environment set, TLS and routes by certificate as deployed):
// R3 streams and consumers, two replicas of each service connected to
// every node, and on top of the services' faults the node leading the
// loans stream SIGKILLed halfway (and restarted on its store), then that
// stream's leadership moved by hand. make test-cluster runs it.
func TestChaosCluster(t *testing.T) {
	if os.Getenv("NATS_SERVER_BIN") == "" {
		t.Skip("NATS_SERVER_BIN is not set (make test-cluster builds nats-server and runs this)")
	}
	runChaos(t, func(keys access.Keyring) natsServer { return startCluster(t, keys) }, "DUNNING_CLUSTER_")
}

// clusterServer is three nats-server processes, n1 to n3.
type clusterServer struct {
	t      *testing.T
	bin    string
	keys   access.Keyring
	admin  nats.Option
	tls    nats.Option
	nodes  []*clusterNode
	killed []string // the nodes SIGKILLed
}

type clusterNode struct {
	name, conf, client, monitor, logPath string
	env                                  []string
	cmd                                  *exec.Cmd
	exited                               chan struct{}
}

// startCluster copies deploy/nats beside the keyring's auth.conf, issues
// the nodes' certificates, and starts the nodes with a loopback
// environment; it returns once the meta group has a leader that sees both
// other nodes current.
func startCluster(t *testing.T, keys access.Keyring) *clusterServer {
	t.Helper()
	names := []string{"n1", "n2", "n3"}
	if _, err := keys.IssueTLS(names, []string{"127.0.0.1", "localhost"}, false); err != nil {
		t.Fatal(err)
	}
	admin, err := keys.Option(access.Admin)
	if err != nil {
		t.Fatal(err)
	}
	tls, err := access.ClientTLS(keys.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	// The configuration files include ./auth.conf, which the keyring
	// generated: the copies live in the keyring's directory.
	for _, f := range []string{"cluster.conf", "n1.conf", "n2.conf", "n3.conf"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys.Dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := &clusterServer{t: t, bin: natsServerBin(t), keys: keys, admin: admin, tls: tls}
	var routes []string
	for _, name := range names {
		n := &clusterNode{name: name, conf: filepath.Join(keys.Dir, name+".conf"),
			client:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			monitor: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			logPath: filepath.Join(t.TempDir(), name+".log")}
		route := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		routes = append(routes, "nats-route://"+route)
		files := keys.TLS(name)
		n.env = []string{"NATS_LISTEN=" + n.client, "NATS_MONITOR=" + n.monitor, "NATS_CLUSTER_LISTEN=" + route,
			"NATS_STORE_DIR=" + t.TempDir(), "NATS_TLS_CA=" + files.CA, "NATS_TLS_CERT=" + files.Cert, "NATS_TLS_KEY=" + files.Key}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.env = append(n.env, "NATS_ROUTES=["+strings.Join(routes, ", ")+"]")
		if err := n.start(c.bin); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stop)
	if err := c.waitHealthy(context.Background()); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	return c
}

// natsServerBin is NATS_SERVER_BIN, or a nats-server built from the module
// this repository pins.
func natsServerBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("NATS_SERVER_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("building nats-server: %v\n%s", err, out)
	}
	return bin
}

func (n *clusterNode) start(bin string) error {
	out, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	n.cmd = exec.Command(bin, "--config", n.conf)
	n.cmd.Env = append(os.Environ(), n.env...)
	n.cmd.Stdout, n.cmd.Stderr = out, out
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(n.cmd, n.exited)
	return nil
}

func (n *clusterNode) signal(sig syscall.Signal, wait time.Duration) bool {
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
		return true
	case <-time.After(wait):
		return false
	}
}

func (c *clusterServer) url() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, "tls://"+n.client)
	}
	return strings.Join(urls, ",")
}

func (c *clusterServer) clientOptions() []nats.Option { return []nats.Option{c.admin, c.tls} }
func (c *clusterServer) tlsOptions() []nats.Option    { return []nats.Option{c.tls} }
func (c *clusterServer) serviceArgs() []string {
	return []string{"--nats-ca", c.keys.CAFile()}
}
func (c *clusterServer) replicas() int { return 3 }

// restart SIGKILLs the node leading the loans stream (no lame duck, no
// flush: a machine lost) and starts it again on its store once the other
// two have elected a new leader; it returns when the cluster is healthy.
func (c *clusterServer) restart() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader, err := c.leader(ctx, "")
	if err != nil {
		return err
	}
	var n *clusterNode
	for _, x := range c.nodes {
		if x.name == leader {
			n = x
		}
	}
	if n == nil {
		return fmt.Errorf("the %s leader %q is no node of the cluster", topology.StreamLoans, leader)
	}
	if !n.signal(syscall.SIGKILL, 10*time.Second) {
		return fmt.Errorf("node %s did not die of SIGKILL", n.name)
	}
	c.killed = append(c.killed, n.name)
	if _, err := c.leader(ctx, n.name); err != nil {
		return fmt.Errorf("after node %s was killed: %w", n.name, err)
	}
	if err := n.start(c.bin); err != nil {
		return err
	}
	return c.waitHealthy(ctx)
}

// moveLeader asks the loans stream's leader to step down, as `nats stream
// cluster step-down` does, and waits for another node to lead.
func (c *clusterServer) moveLeader(ctx context.Context) (from, to string, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nc, err := nats.Connect(c.url(), c.admin, c.tls)
	if err != nil {
		return "", "", err
	}
	defer nc.Close()
	if from, err = c.leader(ctx, ""); err != nil {
		return "", "", err
	}
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+topology.StreamLoans, nil)
	if err != nil {
		return "", "", err
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return "", "", err
	}
	if !resp.Success {
		return "", "", fmt.Errorf("step-down refused: %+v", resp.Error)
	}
	to, err = c.leader(ctx, from)
	return from, to, err
}

// leader waits for the loans stream to have a leader other than not.
func (c *clusterServer) leader(ctx context.Context, not string) (string, error) {
	nc, err := nats.Connect(c.url(), c.admin, c.tls)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := js.Stream(rctx, topology.StreamLoans)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(rctx)
		}
		cancel()
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != not {
			return info.Cluster.Leader, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s has no leader (other than %q): %v", topology.StreamLoans, not, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitHealthy waits until every node's /healthz answers 200 and the meta
// leader sees both other nodes current.
func (c *clusterServer) waitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if last = c.healthy(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the cluster is not healthy: %w", last)
}

func (c *clusterServer) healthy() error {
	type jsz struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Name    string `json:"name"`
				Current bool   `json:"current"`
				Offline bool   `json:"offline"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
	}
	get := func(n *clusterNode, path string, v any) (int, error) {
		cl := http.Client{Timeout: 2 * time.Second}
		resp, err := cl.Get("http://" + n.monitor + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if v != nil {
			return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
		}
		return resp.StatusCode, nil
	}
	for _, n := range c.nodes {
		code, err := get(n, "/healthz", nil)
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if code != http.StatusOK {
			return fmt.Errorf("%s: /healthz %d", n.name, code)
		}
	}
	for _, n := range c.nodes {
		var j jsz
		if _, err := get(n, "/jsz", &j); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if j.Meta == nil || j.Meta.Leader != n.name {
			continue
		}
		if len(j.Meta.Replicas) != len(c.nodes)-1 {
			return fmt.Errorf("the meta leader %s sees %d peers", n.name, len(j.Meta.Replicas))
		}
		for _, p := range j.Meta.Replicas {
			if !p.Current || p.Offline {
				return fmt.Errorf("the meta leader %s sees %s not current", n.name, p.Name)
			}
		}
		return nil
	}
	return errors.New("no node leads the meta group")
}

// checkReplicas checks, after the run, that every stream of the pipeline
// and every consumer on it (the agencies' too, which the feed service
// creates) has a leader and two followers current: the killed node caught
// up, and nothing lives on one node only.
func (c *clusterServer) checkReplicas(ctx context.Context, t *testing.T, js jetstream.JetStream, topo topology.Topology) {
	t.Helper()
	current := func(what string, ci *jetstream.ClusterInfo) error {
		if ci == nil || ci.Leader == "" || len(ci.Replicas) != 2 {
			return fmt.Errorf("%s: not on three nodes with a leader: %+v", what, ci)
		}
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("%s: follower %s not current", what, r.Name)
			}
		}
		return nil
	}
	consumers := map[string]int{}
	for _, name := range topo.Streams() {
		natstest.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			if err := current(name, info.Cluster); err != nil {
				return err
			}
			l := s.ListConsumers(ctx)
			n := 0
			for ci := range l.Info() {
				if err := current(name+" > "+ci.Name, ci.Cluster); err != nil {
					return err
				}
				n++
			}
			if err := l.Err(); err != nil {
				return err
			}
			consumers[name] = n // the last try's count
			return nil
		})
	}
	n := 0
	for _, c := range consumers {
		n += c
	}
	t.Logf("every stream (%d) and consumer (%d) on three nodes, followers current", len(consumers), n)
}

func (c *clusterServer) stop() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !n.signal(syscall.SIGTERM, 15*time.Second) {
				n.signal(syscall.SIGKILL, 5*time.Second)
			}
		}()
	}
	wg.Wait()
	if c.t.Failed() {
		c.dumpLogs()
	}
}

func (c *clusterServer) dumpLogs() {
	for _, n := range c.nodes {
		b, _ := os.ReadFile(n.logPath)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		lines = lines[max(len(lines)-20, 0):]
		c.t.Logf("--- nats-server %s (%s), last lines:\n%s", n.name, n.logPath, strings.Join(lines, "\n"))
	}
}
