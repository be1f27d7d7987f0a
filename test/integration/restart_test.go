package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/app"
	"github.com/opendunning/dunning/pkg/policy"
	"github.com/opendunning/dunning/pkg/stage"
)

// childEnv makes the test binary run stage services as a separate process,
// so that a test can SIGKILL a stage mid-work.
const childEnv = "DUNNING_TEST_CHILD_STAGES"

func TestMain(m *testing.M) {
	if names := os.Getenv(childEnv); names != "" {
		os.Exit(runChild(names))
	}
	os.Exit(m.Run())
}

func runChild(names string) int {
	var stages []stage.Stage
	for _, n := range strings.Split(names, ",") {
		s, ok := stage.ByService(n)
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown stage %q\n", n)
			return 2
		}
		stages = append(stages, s)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	args := strings.Fields(os.Getenv(childEnv + "_ARGS"))
	if err := app.Run(ctx, args, app.Options{Name: "child", Stages: stages, DefaultHTTP: "127.0.0.1:0"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Acceptance 8 (graceful): a stage stopped mid-stream and started again loses
// no loan and contacts none twice.
func TestStageStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 50*time.Millisecond)
	day := h.day
	h.start("core", true, stages(t, "overdue", "escalation", "handoff", "legal")...)
	h.start("contact", false, stages(t, "contact")...)
	const n = 150
	base := time.Now()
	for i := range n {
		h.send(dueEvent(fmt.Sprintf("L-stop-%d", i), "1", 1000, base.Add(time.Duration(i)*5*time.Millisecond)))
	}
	time.Sleep(time.Until(base.Add(day + 300*time.Millisecond)))
	h.stop("contact")
	time.Sleep(500 * time.Millisecond)
	h.start("contact", false, stages(t, "contact")...)
	h.checkLoans(t, "L-stop-", n, policy.KindEscalated, 30*time.Second)
}

// Acceptance 8 (crash): stage processes SIGKILLed mid-work and started again:
// the work resumes from NATS by redelivery; no loan lost, no duplicate contact.
func TestStageKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	h := newHarness(t, 50*time.Millisecond)
	day := h.day
	h.start("core", true, stages(t, "overdue", "legal")...)
	// The child runs three stages: it connects as the all-in-one service,
	// whose grant covers them.
	self := access.Service("dunningd")
	args := fmt.Sprintf("--nats %s --nats-seed %s --nats-identity %s --day %s --http 127.0.0.1:0 --log-level error",
		h.srv.ClientURL(), h.srv.Keyring.SeedFile(self), self, day)
	startChild := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=contact,escalation,handoff", childEnv+"_ARGS="+args)
		cmd.Stderr = os.Stderr
		// If this test process dies (a panic, a killed CI run), its stage
		// processes die with it rather than linger holding its output open.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kill := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	child := startChild()
	t.Cleanup(func() { kill(child) })
	const n = 150
	base := time.Now()
	for i := range n {
		h.send(dueEvent(fmt.Sprintf("L-kill-%d", i), "1", 1000, base.Add(time.Duration(i)*10*time.Millisecond)))
	}
	kills := 0
	for range 3 {
		time.Sleep(400 * time.Millisecond)
		kill(child)
		kills++
		child = startChild()
	}
	h.checkLoans(t, "L-kill-", n, policy.KindHandedOff, 60*time.Second)
	t.Logf("%d loans through handoff across %d SIGKILLs of the stage process", n, kills)
}

// checkLoans waits until n loans named prefix<i> reached decision k, then
// checks each has every decision up to it exactly once.
func (h *harness) checkLoans(t *testing.T, prefix string, n int, k policy.DecisionKind, timeout time.Duration) {
	t.Helper()
	ladder := []policy.DecisionKind{policy.KindOverdueConfirmed, policy.KindContactRequested, policy.KindEscalated, policy.KindHandedOff}
	for i := range n {
		loan := fmt.Sprintf("%s%d", prefix, i)
		h.waitKind(loan, k, 1, timeout)
		c := counts(h.entries(loan))
		for _, want := range ladder {
			if c[want.String()] != 1 {
				t.Errorf("%s: %s recorded %d times, want 1: %s", loan, want, c[want.String()], summary(h.entries(loan)))
			}
			if want == k {
				break
			}
		}
	}
}
