package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// TestFaultsTemporalRestart stops the Temporal server for a few seconds in
// the middle of a backup's transfer (reads slowed to 48 MiB/s), and again
// while a restore writes: the server comes back on the same SQLite file,
// the worker that was running reconnects by itself (no new worker is
// started), both jobs complete, nothing is stored twice, and the point
// restores bit for bit.
func TestFaultsTemporalRestart(t *testing.T) {
	start := time.Now()
	ctx := context.Background()
	down := 3 * time.Second
	if faultsFull() {
		down = 10 * time.Second
	}
	e := newEnv(t, envOpts{initArgs: []string{"--pack-size", "2097152", "--leaf-blocks", "64"}})
	w := e.startWorker([]string{"VMVAULT_READ_LIMIT_MIB=48"})
	spec := vmfixture.Spec{Name: "tr1", OSSize: 32 * mib, DataDisks: []int64{384 * mib}, Seed: 31}
	if _, err := vmfixture.Create(e.vmsRoot(), spec); err != nil {
		t.Fatal(err)
	}
	if err := vmfixture.Mutate(e.vmsRoot(), "tr1", 0, 384, 32); err != nil { // incompressible, all new
		t.Fatal(err)
	}
	want := diskHashes(t, filepath.Join(e.vmsRoot(), "tr1"))
	o := faultOutcome{Scenario: "Temporal server restart: mid-transfer, mid-restore"}
	alive := func(what string) {
		select {
		case <-w.done:
			t.Fatalf("the worker exited while Temporal was down (%s): %v", what, w.cmd.ProcessState)
		default:
		}
	}

	// A backup, with the server away mid-transfer.
	e.mustCLI("backup", "tr1")
	waitFor(t, "a few packs of the backup stored", time.Minute, func() bool { return len(e.objects("packs/")) >= 8 })
	packs := len(e.objects("packs/"))
	e.tp.Restart(t, down)
	o.Faults++
	alive("backup")
	t.Logf("temporal down %s with %d packs stored", down, packs)
	var res workflows.BackupVMResult
	jctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c := e.tp.Client(t)
	if err := c.GetWorkflow(jctx, workflows.BackupWorkflowID("tr1"), "").Get(jctx, &res); err != nil {
		t.Fatalf("backup across a Temporal restart: %v", err)
	}
	o.Completed++
	alive("after the backup")
	if res.RecoveryPoint == "" || len(e.objects("packs/")) <= packs {
		t.Fatalf("backup across the restart: %+v", res)
	}
	t.Logf("backup %s done, notes %q", res.RecoveryPoint, res.Notes)
	idx, err := e.openVault().Repo().Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := idx.Stats(); st.Duplicates != 0 {
		o.Leaks += st.Duplicates
		t.Errorf("%d blobs stored twice across the restart", st.Duplicates)
	}

	// A restore, with the server away while it writes.
	dir := filepath.Join(e.dataDir, "restored")
	out := e.cliEnv(nil, "restore", res.RecoveryPoint, "--disks", dir)
	m := regexp.MustCompile(`started restore job (\S+) `).FindStringSubmatch(out.stdout)
	if out.code != 0 || m == nil {
		t.Fatalf("restore: exit %d: %s", out.code, out.stderr)
	}
	waitFor(t, "the restore writing", time.Minute, func() bool {
		ents, _ := os.ReadDir(dir)
		return len(ents) > 0
	})
	e.tp.Restart(t, down)
	o.Faults++
	alive("restore")
	if err := c.GetWorkflow(jctx, m[1], "").Get(jctx, nil); err != nil {
		t.Fatalf("restore across a Temporal restart: %v", err)
	}
	o.Completed++
	for d, h := range want {
		got, err := vmfixture.SHA256(filepath.Join(dir, d+".raw"))
		if err != nil || got != h {
			o.WrongRestores++
			t.Errorf("restore across the restart: disk %s sha256 %s (%v), want %s", d, got, err, h)
		}
	}
	o.Restores++
	ents, _ := os.ReadDir(dir)
	for _, f := range ents {
		if strings.HasPrefix(f.Name(), ".") {
			o.Leaks++
			t.Errorf("restore left %s", f.Name())
		}
	}
	// And the point restores once more, the server undisturbed.
	e.restoreDisksMatchNoTemp(res.RecoveryPoint, want)
	o.Restores++
	alive("at the end")
	recordFaults(t, o)
	t.Logf("took %s", time.Since(start).Round(time.Second))
}

// waitFor polls cond every 100 ms until it holds, or fails the test.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
