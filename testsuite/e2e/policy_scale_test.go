package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/testsuite/harness"
	"github.com/vmvault/vmvault/workflows"
)

// A policy update over a fleet finishes by itself when the worker running
// it is killed halfway: the VMs are protected through the Protect
// workflow (timed), 'vmvault policy update' starts the update, the worker
// is killed once part of the schedules are done and started again, and
// the command ends with every schedule rescheduled. 1000 VMs with
// VMVAULT_E2E_FULL=1, else 200.
func TestPolicyUpdateSurvivesWorkerKill(t *testing.T) {
	n := 200
	if os.Getenv("VMVAULT_E2E_FULL") == "1" {
		n = 1000
	}
	e := newEnv(t, envOpts{})
	w := e.startWorker(nil)
	ctx := context.Background()
	c := e.tp.Client(t)
	e.mustCLI("policy", "create", "gold", "--time", "22:00")

	start := time.Now()
	protectFleet(t, c, n)
	t.Logf("protected %d vms through the Protect workflow in %s", n, time.Since(start).Round(time.Millisecond))

	done := make(chan result, 1)
	start = time.Now()
	go func() { done <- e.cli("policy", "update", "gold", "--time", "03:00", "--time-zone", "Asia/Tokyo") }()

	// Kill the worker once part of the schedules are updated.
	var killedAt int
	deadline := time.Now().Add(2 * time.Minute)
	for killedAt == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the policy update made no progress")
		}
		var p workflows.UpdatePolicyProgress
		if v, err := c.QueryWorkflow(ctx, workflows.PolicyWorkflowID("gold"), "", workflows.QueryProgress); err == nil && v.Get(&p) == nil && len(p.Rescheduled) > 0 {
			if len(p.Rescheduled) >= n {
				t.Fatalf("the update finished (%d of %d) before the worker could be killed", len(p.Rescheduled), n)
			}
			w.kill()
			killedAt = len(p.Rescheduled)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("killed the worker after %d of %d schedules (%s in)", killedAt, n, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	e.startWorker(nil)

	var r result
	select {
	case r = <-done:
	case <-time.After(4 * time.Minute):
		t.Fatal("policy update did not finish after the worker restart")
	}
	t.Logf("policy update of %d vms with a worker kill took %s; stderr: %s", n, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("rescheduled %d vms: vm0000, vm0001", n)) {
		t.Fatalf("policy update: exit %d\nstdout: %.300s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "started job policy-gold (run ") || !strings.Contains(r.stderr, fmt.Sprintf("updating %d schedules", n)) {
		t.Fatalf("policy update did not say it started: %q", r.stderr)
	}
	assertFleetSchedules(t, c, n, "Asia/Tokyo", 3, 4)

	// Without a kill, for the time it takes.
	start = time.Now()
	out := e.mustCLI("policy", "update", "gold", "--time", "05:00")
	t.Logf("policy update of %d vms took %s", n, time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, fmt.Sprintf("rescheduled %d vms", n)) {
		t.Fatalf("second policy update: %.300s", out)
	}
	assertFleetSchedules(t, c, n, "Asia/Tokyo", 5, 6)
	logWorkflowShow(t, e, workflows.ProtectionWorkflowID("vm0000"))
}

// protectFleet protects vm0000... through the Protect workflow, 16 at a
// time, as 'vmvault protect' does. A start or wait that a busy dev server
// times out is tried again (a start that did happen is waited for).
func protectFleet(t *testing.T, c client.Client, n int) {
	t.Helper()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			in := workflows.ProtectInput{VM: fmt.Sprintf("vm%04d", i), Policy: "gold", Host: "local", MaxProtectedVMs: 1000,
				TaskQueue: "vmvault", RequestedBy: "e2e"}
			opts := workflows.ProtectStartOptions("vmvault", in)
			var err error
			for try := 0; try < 5; try++ {
				var run client.WorkflowRun
				run, err = c.ExecuteWorkflow(ctx, opts, workflows.Protect, in)
				var started *serviceerror.WorkflowExecutionAlreadyStarted
				if errors.As(err, &started) {
					run, err = c.GetWorkflow(ctx, opts.ID, started.RunId), nil
				}
				if err == nil {
					if err = run.Get(ctx, nil); err == nil {
						return nil
					}
				}
				if !busy(err) {
					return err
				}
				time.Sleep(time.Second)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("protect the fleet: %v", err)
	}
}

// busy: the dev server timed out or was unavailable (a loaded machine).
func busy(err error) bool {
	var unavailable *serviceerror.Unavailable
	var deadline *serviceerror.DeadlineExceeded
	return errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.Is(err, context.DeadlineExceeded)
}

// assertFleetSchedules checks that every VM's schedule runs in tz at one
// of hours, and its action backs the VM up under policy gold.
func assertFleetSchedules(t *testing.T, c client.Client, n int, tz string, hours ...int) {
	t.Helper()
	ctx := context.Background()
	var bad atomic.Int32
	var mu sync.Mutex
	var problems []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			vm := fmt.Sprintf("vm%04d", i)
			d, err := c.ScheduleClient().GetHandle(gctx, workflows.ProtectScheduleID(vm)).Describe(gctx)
			if err != nil {
				return fmt.Errorf("describe schedule of %s: %w", vm, err)
			}
			problem := scheduleProblem(d, vm, tz, hours)
			if problem != "" {
				bad.Add(1)
				mu.Lock()
				problems = append(problems, problem)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if bad.Load() > 0 {
		t.Fatalf("%d of %d schedules not updated, e.g. %s", bad.Load(), n, problems[0])
	}
}

func scheduleProblem(d *client.ScheduleDescription, vm, tz string, hours []int) string {
	spec := d.Schedule.Spec
	if spec.TimeZoneName != tz || len(spec.Calendars) != 1 || len(spec.Calendars[0].Hour) != 1 {
		return fmt.Sprintf("%s: spec %+v", vm, spec)
	}
	h := spec.Calendars[0].Hour[0].Start
	ok := false
	for _, want := range hours {
		ok = ok || h == want
	}
	if !ok || !strings.Contains(spec.Calendars[0].Comment, "policy gold") {
		return fmt.Sprintf("%s: hour %d, comment %q", vm, h, spec.Calendars[0].Comment)
	}
	act, isWf := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !isWf || len(act.Args) != 1 {
		return fmt.Sprintf("%s: action %+v", vm, d.Schedule.Action)
	}
	payload, isPayload := act.Args[0].(*commonpb.Payload)
	if !isPayload {
		return fmt.Sprintf("%s: action args %T", vm, act.Args[0])
	}
	var in workflows.ScheduledBackupInput
	if err := converter.GetDefaultDataConverter().FromPayload(payload, &in); err != nil {
		return fmt.Sprintf("%s: action args: %v", vm, err)
	}
	if in.VM != vm || in.Policy != "gold" || in.Host != "local" {
		return fmt.Sprintf("%s: action input %+v", vm, in)
	}
	return ""
}

// logWorkflowShow logs what 'temporal workflow show' prints for id.
func logWorkflowShow(t *testing.T, e *env, id string) {
	t.Helper()
	bin := filepath.Join(harness.BinDir(), "temporal")
	for _, args := range [][]string{{"workflow", "describe"}, {"workflow", "show"}} {
		out, err := exec.Command(bin, append(args, "--address", e.tp.HostPort, "--workflow-id", id)...).CombinedOutput()
		t.Logf("temporal %s --workflow-id %s (%v):\n%s", strings.Join(args, " "), id, err, tail(string(out), 3000))
	}
}
