package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/vmvault/vmvault/workflows"
)

// nbdProcesses lists the qemu-nbd processes serving an image under dir.
func nbdProcesses(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "qemu-nbd") && strings.Contains(cmd, dir) {
			out = append(out, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	return out
}

// awaitTransfer waits until a backup's disk transfer runs on its host;
// prev is the run ID of the job's previous run, which is ignored.
func (e *env) awaitTransfer(id, prev string) {
	e.t.Helper()
	c := e.tp.Client(e.t)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		d, err := c.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			e.t.Fatal(err)
		}
		if d.WorkflowExecutionInfo.Execution.GetRunId() == prev {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if d.WorkflowExecutionInfo.CloseTime != nil {
			e.t.Fatalf("%s ended before its transfer could be interrupted", id)
		}
		for _, pa := range d.PendingActivities {
			if pa.ActivityType.GetName() == "TransferDisk" && pa.State == enumspb.PENDING_ACTIVITY_STATE_STARTED {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("%s: no transfer started", id)
}

// The worker of the host that owns a VM is killed in the middle of its
// backup's transfer. When it comes back within the job's limit, the job
// completes and restores bit-exact. When it stays away, the job retries
// until its limit and fails with one line naming the host; the snapshot's
// cleanup runs once the host's worker is back (no qemu-nbd of the snapshot
// is left), and the next backup succeeds and restores.
func TestFaultsHostAway(t *testing.T) {
	needQemuUtils(t)
	e := newEnv(t, envOpts{})
	inv := filepath.Join(e.dataDir, "hostb")
	dir := qcow2Disks(t, inv, "far")
	data := filepath.Join(dir, "data0.qcow2")
	// 32 MiB more to read at 4 MiB/s: the transfer takes about 10 s.
	mustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 4M 32M", data)
	e.startWorker(nil, "--central")
	hostEnv := qemuWorkerEnv(inv, "VMVAULT_READ_LIMIT_MIB=4")
	w := e.startWorker(hostEnv, "--host", "hostb")
	id := workflows.BackupWorkflowID("far")
	c := e.tp.Client(t)
	ctx := context.Background()
	var jobs faultJobs
	faults, wrong, leaks := 0, 0, 0
	// The snapshot of a stopped qcow2 VM is a qemu-nbd daemon per disk on
	// a socket in the VM folder: both must be gone.
	sockets := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, ".vmvault-nbd-*"))
		return append(m, nbdProcesses(dir)...)
	}
	restore := func(rp string, want map[string]string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		e.mustCLI("restore", rp, "--disks", out, "--wait", "--host", "hostb")
		jobs.restores++
		if got := diskHashes(t, out); got["os"] != want["os"] || got["data0"] != want["data0"] {
			wrong++
			t.Errorf("recovery point %s restored %v, want %v", rp, got, want)
		}
	}

	// Back within the limit: the job completes.
	want := qcow2Hashes(t, dir)
	e.mustCLI("backup", "far", "--host", "hostb", "--timeout", "3m")
	e.awaitTransfer(id, "")
	w.kill()
	faults++
	time.Sleep(3 * time.Second)
	w = e.startWorker(hostEnv, "--host", "hostb")
	var res workflows.BackupVMResult
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		t.Fatalf("backup after its host came back: %v", err)
	}
	jobs.completed++
	if left := sockets(); len(left) > 0 {
		leaks++
		t.Errorf("the backup left its snapshot: %v", left)
	}
	restore(res.RecoveryPoint, want)

	// Away past the limit: the job fails naming the host; its cleanup runs
	// when the host is back.
	mustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 10M 8M", data)
	want = qcow2Hashes(t, dir)
	limit := 30 * time.Second
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	prev := d.WorkflowExecutionInfo.Execution.GetRunId()
	done := make(chan result, 1)
	go func() { done <- e.cli("backup", "far", "--host", "hostb", "--timeout", limit.String(), "--wait") }()
	e.awaitTransfer(id, prev)
	w.kill()
	faults++
	killed := time.Now()
	time.Sleep(time.Second)
	t.Logf("with the host's worker gone, its snapshot holds %d qemu-nbd daemons", len(nbdProcesses(dir)))
	time.Sleep(time.Until(killed.Add(limit + 5*time.Second)))
	w = e.startWorker(hostEnv, "--host", "hostb")
	var r result
	select {
	case r = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the backup did not end after its host came back")
	}
	t.Logf("backup with its host away ended %v after the kill", time.Since(killed).Round(time.Second))
	lines := nonProgressLines(r.stderr)
	if r.code == 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], "vmvault: ") || !strings.Contains(lines[0], "hostb") {
		t.Fatalf("backup with its host away: exit %d, want one error line naming host hostb:\n%s", r.code, r.stderr)
	}
	jobs.failedCleanly++
	t.Logf("backup with its host away: %s", lines[0])
	if left := sockets(); len(left) > 0 {
		leaks++
		t.Errorf("the failed backup left its snapshot after the host came back: %v", left)
	}
	res = e.backup("far", "--host", "hostb")
	jobs.completed++
	restore(res.RecoveryPoint, want)

	if faultsFull() {
		// Away before the job starts: nothing was taken, the job fails at
		// its limit naming the host, and runs once the host is back.
		w.kill()
		faults++
		r := e.cli("backup", "far", "--host", "hostb", "--timeout", "20s", "--wait")
		lines := nonProgressLines(r.stderr)
		if r.code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "on host hostb did not finish within its limit") {
			t.Fatalf("backup with its host away from the start: exit %d:\n%s", r.code, r.stderr)
		}
		jobs.failedCleanly++
		if left := sockets(); len(left) > 0 {
			leaks++
			t.Errorf("a backup that never reached its host left %v", left)
		}
		e.startWorker(hostEnv, "--host", "hostb")
		mustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x7c 20M 2M", data)
		want = qcow2Hashes(t, dir)
		res = e.backup("far", "--host", "hostb")
		jobs.completed++
		restore(res.RecoveryPoint, want)
	}
	recordFaults(t, faultOutcome{
		Scenario:      "host's worker away mid-job (back within the limit, and past it)",
		Faults:        faults,
		Completed:     jobs.completed,
		FailedCleanly: jobs.failedCleanly,
		Restores:      jobs.restores,
		WrongRestores: wrong,
		Leaks:         leaks,
	})
}
