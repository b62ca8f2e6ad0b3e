package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// GC while two backups run: a purged point's data is freed, every surviving
// recovery point (including those of the backups that ran across the GC)
// restores bit-exact, and vault stats shows the space returned.
func TestGCWhileBackupsRun(t *testing.T) {
	start := time.Now()
	ctx := context.Background()
	e := newEnv(t, envOpts{initArgs: []string{"--pack-size", "4194304"}})
	e.startWorker(nil)
	for i, vm := range []string{"gone1", "app1", "app2"} {
		if _, err := vmfixture.Create(e.vmsRoot(), smallSpec(vm, uint64(40+i))); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]map[string]string{}
	for _, vm := range []string{"gone1", "app1", "app2"} {
		res := e.backup(vm)
		want[res.RecoveryPoint] = diskHashes(t, filepath.Join(e.vmsRoot(), vm))
	}
	var gone string
	for rp := range want {
		if strings.HasPrefix(rp, "gone1/") {
			gone = rp
		}
	}
	// gone1's point is deleted and its soft-delete period ends: purged.
	v := e.openVault()
	purgeNow(t, v, gone)
	delete(want, gone)
	packsBefore := len(e.objects("packs/"))

	// New data on both VMs, backed up while GC runs.
	for i, vm := range []string{"app1", "app2"} {
		if err := vmfixture.Mutate(e.vmsRoot(), vm, 8, 24, uint64(70+i)); err != nil {
			t.Fatal(err)
		}
	}
	hashes := map[string]map[string]string{}
	for _, vm := range []string{"app1", "app2"} {
		hashes[vm] = diskHashes(t, filepath.Join(e.vmsRoot(), vm))
		e.mustCLI("backup", vm, "--timeout", "30s")
	}
	// GC refuses a grace that a running backup's limit could outlast.
	out := e.mustCLI("vault", "gc", "--grace", "31s", "--wait", "--json")
	var gc workflows.GCResult
	if err := json.Unmarshal([]byte(out), &gc); err != nil {
		t.Fatalf("gc output %q: %v", out, err)
	}
	c := e.tp.Client(t)
	for _, vm := range []string{"app1", "app2"} {
		var res workflows.BackupVMResult
		if err := c.GetWorkflow(ctx, workflows.BackupWorkflowID(vm), "").Get(ctx, &res); err != nil {
			t.Fatalf("backup of %s across GC: %v", vm, err)
		}
		want[res.RecoveryPoint] = hashes[vm]
	}
	t.Logf("gc: mark %+v", gc.Mark)
	t.Logf("gc: sweep %+v", gc.Sweep)
	if gc.Sweep.DeletedPacks == 0 || gc.Sweep.FreedBytes <= 0 || gc.Mark.SoftDeleted != 0 {
		t.Fatalf("gc freed nothing: %+v", gc)
	}
	t.Logf("packs: %d before the backups and GC, %d after", packsBefore, len(e.objects("packs/")))
	for rp, h := range want {
		e.restoreDisksMatch(rp, h)
	}
	e.mustCLI("vault", "check")
	stats := e.mustCLI("vault", "stats")
	if !strings.Contains(stats, "last gc: ") || !strings.Contains(stats, "returned") || strings.Contains(stats, "last gc: never") {
		t.Fatalf("vault stats does not show the space returned:\n%s", stats)
	}
	for _, l := range scanLines(stats) {
		if strings.HasPrefix(l, "last gc") || strings.HasPrefix(l, "storage used") {
			t.Log(l)
		}
	}
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

// purgeNow deletes rp and purges it at once (as if its soft-delete period
// had ended), so GC has its data to free.
func purgeNow(t *testing.T, v *vault.Vault, rp string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	if _, err := v.DeleteRecoveryPoint(ctx, rp, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if purged, err := v.Maint().PurgeDeleted(ctx, now.Add(2*time.Hour), time.Hour); err != nil || len(purged) != 1 {
		t.Fatalf("purge %s: %v %v", rp, purged, err)
	}
}
