package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
)

// A backup cancelled while its snapshot is being taken leaves nothing
// behind. The snapshot of a stopped qcow2 VM starts qemu-nbd on each disk,
// then checks the images with qemu-img; a qemu-img that takes 20 s (a
// stand-in for a guest's slow pre-script) holds the step while the job is
// cancelled. Afterwards no qemu-nbd socket is left in the VM folder and
// nothing holds the images' lock, also once the slow step would have ended.
func TestCancelDuringSnapshotLeavesNothing(t *testing.T) {
	e, dir, _ := slowSnapshotBackup(t)
	sockets := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, ".vmvault-nbd-*"))
		return m
	}
	ctx := context.Background()
	c := e.tp.Client(t)
	if err := c.CancelWorkflow(ctx, "backup-slow", ""); err != nil {
		t.Fatal(err)
	}
	canceled := time.Now()
	wf := c.GetWorkflow(ctx, "backup-slow", "")
	if err := wf.Get(ctx, nil); err == nil {
		t.Fatal("the cancelled backup succeeded")
	}
	d, err := c.DescribeWorkflowExecution(ctx, "backup-slow", "")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.WorkflowExecutionInfo.Status; st != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Fatalf("backup ended %s, want canceled", st)
	}
	// Past the end of the slow step: a step that never heard of the cancel
	// would have finished its snapshot by now.
	time.Sleep(time.Until(canceled.Add(25 * time.Second)))
	if left := sockets(); len(left) > 0 {
		t.Fatalf("the cancelled backup left qemu-nbd sockets: %v", left)
	}
	for _, d := range []string{"os", "data0"} {
		mustRun(t, "qemu-io", "-f", "qcow2", "-c", "write 0 4k", filepath.Join(dir, d+".qcow2")) // nothing holds the lock
	}
}

// slowSnapshotBackup starts a backup of a stopped qcow2 VM "slow" on the
// qemu platform whose snapshot step takes 20 s more (qemu-img check
// sleeps), and returns once the step holds the snapshot's qemu-nbd.
func slowSnapshotBackup(t *testing.T) (e *env, dir string, w *worker) {
	t.Helper()
	needQemuUtils(t)
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	slow := "#!/bin/sh\nif [ \"$1\" = check ]; then sleep 20; fi\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "qemu-img"), []byte(slow), 0o755); err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, envOpts{})
	inv := filepath.Join(e.dataDir, "qemu")
	dir = qcow2Disks(t, inv, "slow")
	w = e.startWorker(qemuWorkerEnv(inv, "PATH="+bin+":"+os.Getenv("PATH")))
	if r := e.cli("backup", "slow"); r.code != 0 {
		t.Fatalf("backup slow: %s", r.stderr)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(dir, ".vmvault-nbd-*")); len(m) > 0 {
			return e, dir, w
		}
		if time.Now().After(deadline) {
			t.Fatal("the snapshot never started qemu-nbd")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func qemuWorkerEnv(inv string, extra ...string) []string {
	return append([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + inv}, extra...)
}

// A worker killed while it holds a short step (here CreateSnapshot) stalls
// the job only for the step's heartbeat timeout: a new worker takes the
// step over and the backup finishes within about a minute of the kill,
// not after the step's 15-minute start-to-close timeout.
func TestWorkerKilledDuringShortStep(t *testing.T) {
	e, dir, w := slowSnapshotBackup(t)
	w.kill()
	killed := time.Now()
	e.startWorker(qemuWorkerEnv(filepath.Dir(dir)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.tp.Client(t).GetWorkflow(ctx, "backup-slow", "").Get(ctx, nil); err != nil {
		t.Fatalf("backup after the worker was killed during its snapshot: %v (%v after the kill)", err, time.Since(killed).Round(time.Second))
	}
	t.Logf("the backup finished %v after the kill", time.Since(killed).Round(time.Second))
	if left, _ := filepath.Glob(filepath.Join(dir, ".vmvault-nbd-*")); len(left) > 0 {
		t.Fatalf("qemu-nbd sockets left: %v", left)
	}
}
