package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// Policies and protection against the real binaries and a dev server:
// invalid policies refused by field, a VM protected by a Schedule that
// backs it up when triggered, a scheduled run skipped while an on-demand
// backup of the VM runs, 'protected', a policy in use kept, a policy update
// rescheduling, unprotect keeping the data, and the per-vault limit.
func TestProtect(t *testing.T) {
	e := newEnv(t, envOpts{})
	// Slow reads keep the big VM's on-demand backup running for seconds.
	e.startWorker([]string{"VMVAULT_READ_LIMIT_MIB=128"})
	ctx := context.Background()
	sc := e.tp.Client(t).ScheduleClient()
	if _, err := vmfixture.Create(e.vmsRoot(), vmfixture.Spec{Name: "web", OSSize: 16 * mib, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := vmfixture.Create(e.vmsRoot(), vmfixture.Spec{Name: "busy", OSSize: 16 * mib, DataDisks: []int64{512 * mib}, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	if err := vmfixture.Mutate(e.vmsRoot(), "busy", 0, 512, 2); err != nil {
		t.Fatal(err)
	}

	// A bad field: exit 1, one line naming it.
	r := e.cli("policy", "create", "gold", "--tier", "enhanced", "--frequency", "hourly", "--every-hours", "5", "--window-start", "08:00", "--window-hours", "12")
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, `policy "gold": schedule.every_hours: 5 is not one of 4, 6, 8, 12`) {
		t.Fatalf("bad policy: exit %d, stderr %q", r.code, r.stderr)
	}
	e.failCLI("schedule.time_zone", "policy", "create", "gold", "--time-zone", "Mars/Olympus")
	e.mustCLI("policy", "create", "gold", "--time", "01:30", "--time-zone", "Europe/Berlin", "--daily", "14", "--weekly", "8")

	out := e.mustCLI("protect", "web", "--policy", "gold")
	if !strings.Contains(out, "protected vm web (host local) with policy gold: schedule protect-web") {
		t.Fatalf("protect: %q", out)
	}
	record := os.Getenv("VMVAULT_RECORD_HISTORIES") // histories for testsuite/replay
	if record != "" {
		e.recordHistory(record, "protect.json", workflows.ProtectionWorkflowID("web"))
	}
	d, err := sc.GetHandle(ctx, "protect-web").Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Schedule.Spec.TimeZoneName != "Europe/Berlin" || len(d.Schedule.Spec.Calendars) != 1 || len(d.Info.NextActionTimes) == 0 {
		t.Fatalf("schedule spec: %+v, next %v", d.Schedule.Spec, d.Info.NextActionTimes)
	}
	if h := d.Schedule.Spec.Calendars[0].Hour[0].Start; h != 1 && h != 2 && h != 3 {
		t.Fatalf("gold at 01:30 + up to 2 h starts at hour %d", h)
	}

	// Triggered, the schedule backs the VM up.
	if err := sc.GetHandle(ctx, "protect-web").Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	res := e.scheduledRun("protect-web", 0)
	if res.Skipped || res.Backup == nil || !strings.HasPrefix(res.Backup.RecoveryPoint, "web/") {
		t.Fatalf("scheduled run: %+v", res)
	}
	if rps := e.rpCount("web"); rps != 1 {
		t.Fatalf("web has %d recovery points after the scheduled run", rps)
	}

	// A scheduled run while an on-demand backup runs is skipped: no second backup.
	e.mustCLI("protect", "busy")
	e.mustCLI("backup", "busy")
	if err := sc.GetHandle(ctx, "protect-busy").Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	res = e.scheduledRun("protect-busy", 0)
	if !res.Skipped || res.Backup != nil || !strings.Contains(res.Note, "already running (job backup-busy)") {
		t.Fatalf("scheduled run during a backup: %+v", res)
	}
	if err := e.tp.Client(t).GetWorkflow(ctx, "backup-busy", "").Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if rps := e.rpCount("busy"); rps != 1 {
		t.Fatalf("busy has %d recovery points, want the on-demand one only", rps)
	}
	// On demand still works for a protected VM.
	e.backup("web")

	out = e.mustCLI("protected")
	lines := scanLines(out)
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "VM") {
		t.Fatalf("protected:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 6 || f[4] == "-" || f[5] != "ok" {
			t.Fatalf("protected row %q: want vm host policy last-backup next-run ok\n%s", l, out)
		}
	}
	if !strings.HasPrefix(lines[2], "web") || !strings.Contains(lines[2], " gold ") {
		t.Fatalf("protected:\n%s", out)
	}

	e.failCLI("policy gold is in use by 1 vms: web", "policy", "delete", "gold")

	// Updating the policy reschedules its VMs.
	out = e.mustCLI("policy", "update", "gold", "--time", "12:00")
	if !strings.Contains(out, "rescheduled 1 vms: web") {
		t.Fatalf("policy update: %q", out)
	}
	if record != "" {
		e.recordHistory(record, "update-policy.json", workflows.PolicyWorkflowID("gold"))
	}
	d, err = sc.GetHandle(ctx, "protect-web").Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h := d.Schedule.Spec.Calendars[0].Hour[0].Start; h != 12 && h != 13 {
		t.Fatalf("gold at 12:00 + up to 2 h starts at hour %d", h)
	}

	// Unprotect keeps the data.
	out = e.mustCLI("unprotect", "web", "--retain-data")
	if !strings.Contains(out, "its 2 recovery points are kept") {
		t.Fatalf("unprotect: %q", out)
	}
	if record != "" {
		e.recordHistory(record, "unprotect.json", workflows.ProtectionWorkflowID("web"))
	}
	var nf *serviceerror.NotFound
	if _, err := sc.GetHandle(ctx, "protect-web").Describe(ctx); !errors.As(err, &nf) {
		t.Fatalf("schedule after unprotect: %v", err)
	}
	if rps := e.rpCount("web"); rps != 2 {
		t.Fatalf("web has %d recovery points after unprotect --retain-data", rps)
	}
	e.mustCLI("policy", "delete", "gold")

	// One VM protected, the limit 1: a second is refused.
	r = e.cliEnv([]string{"VMVAULT_MAX_PROTECTED_VMS=1"}, "protect", "web")
	if r.code != 1 || !strings.Contains(r.stderr, "already protects 1 vms, the limit (VMVAULT_MAX_PROTECTED_VMS=1)") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("protect over the limit: exit %d %q", r.code, r.stderr)
	}
	if _, err := sc.GetHandle(ctx, "protect-web").Describe(ctx); !errors.As(err, &nf) {
		t.Fatalf("a schedule was created over the limit: %v", err)
	}
}

// scheduledRun waits for the schedule's run number n and returns its result.
func (e *env) scheduledRun(id string, n int) workflows.ScheduledBackupResult {
	e.t.Helper()
	ctx := context.Background()
	h := e.tp.Client(e.t).ScheduleClient().GetHandle(ctx, id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := h.Describe(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(d.Info.RecentActions) > n {
			run := d.Info.RecentActions[n].StartWorkflowResult
			var res workflows.ScheduledBackupResult
			if err := e.tp.Client(e.t).GetWorkflow(ctx, run.WorkflowID, run.FirstExecutionRunID).Get(ctx, &res); err != nil {
				e.t.Fatalf("scheduled run %s: %v", run.WorkflowID, err)
			}
			return res
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("schedule %s: no run %d", id, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) rpCount(vm string) int {
	e.t.Helper()
	var rows []json.RawMessage
	if err := json.Unmarshal([]byte(e.mustCLI("rp", "list", vm, "--json")), &rows); err != nil {
		e.t.Fatal(err)
	}
	return len(rows)
}
