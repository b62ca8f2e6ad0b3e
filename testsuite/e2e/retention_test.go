package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

type rpListRow struct {
	ID         string `json:"id"`
	DeletedAt  string `json:"deleted_at"`
	PurgeAfter string `json:"purge_after"`
}

func (e *env) rpList(args ...string) []rpListRow {
	e.t.Helper()
	var rows []rpListRow
	if err := json.Unmarshal([]byte(e.mustCLI(append([]string{"rp", "list", "--json"}, args...)...)), &rows); err != nil {
		e.t.Fatal(err)
	}
	return rows
}

func rowIDs(rows []rpListRow) []string {
	ids := []string{}
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return ids
}

// TestSoftDelete: a deleted recovery point is hidden from rp list, shown by
// rp list --deleted, refused by restore with a one-line "was deleted"
// error; undelete brings it back and it restores bit-exact.
func TestSoftDelete(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("sd1", 7)); err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(e.vmsRoot(), "sd1")
	first := e.backup("sd1").RecoveryPoint
	firstHash := diskHashes(t, vmDir)
	if err := vmfixture.Mutate(e.vmsRoot(), "sd1", 10, 2, 1); err != nil {
		t.Fatal(err)
	}
	second := e.backup("sd1").RecoveryPoint

	out := e.mustCLI("rp", "delete", first)
	t.Logf("rp delete: %s", out)
	if !strings.Contains(out, "deleted recovery point "+first+"; 'vmvault rp undelete "+first+"' restores it until ") {
		t.Fatalf("rp delete said %q", out)
	}
	if got := rowIDs(e.rpList("sd1")); len(got) != 1 || got[0] != second {
		t.Fatalf("rp list after delete: %v", got)
	}
	del := e.rpList("--deleted")
	if len(del) != 1 || del[0].ID != first || del[0].PurgeAfter == "" {
		t.Fatalf("rp list --deleted: %+v", del)
	}
	table := e.mustCLI("rp", "list", "--deleted")
	if !strings.Contains(table, "UNDELETE UNTIL") || !strings.Contains(table, first) {
		t.Fatalf("rp list --deleted table:\n%s", table)
	}
	t.Logf("rp list --deleted:\n%s", table)
	line := e.failCLI("was deleted at", "restore", first, "--disks", filepath.Join(t.TempDir(), "r"), "--wait")
	t.Logf("restore of a deleted point: %s", line)
	if !strings.Contains(line, "vmvault rp undelete "+first+" restores it until") {
		t.Fatalf("restore of a deleted point: %s", line)
	}
	e.failCLI("was deleted at", "rp", "delete", first)

	if out := e.mustCLI("rp", "undelete", first); !strings.Contains(out, "undeleted recovery point "+first) {
		t.Fatalf("rp undelete said %q", out)
	}
	if got := rowIDs(e.rpList("sd1")); len(got) != 2 || got[0] != first {
		t.Fatalf("rp list after undelete: %v", got)
	}
	if del := e.rpList("--deleted"); len(del) != 0 {
		t.Fatalf("rp list --deleted after undelete: %+v", del)
	}
	e.restoreDisksMatch(first, firstHash)
	e.failCLI("is not deleted", "rp", "undelete", first)

	// The billing basis: one small instance, billable, beside the real usage.
	var stats struct {
		VMs []struct {
			VM      string `json:"vm"`
			Billing struct {
				Billable      bool   `json:"billable"`
				Instances     int    `json:"instances"`
				InstanceClass string `json:"instance_class"`
				StorageBasis  int64  `json:"storage_basis_bytes"`
			} `json:"billing"`
		} `json:"vms"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("vault", "stats", "--json")), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.VMs) != 1 {
		t.Fatalf("vault stats: %+v", stats)
	}
	if b := stats.VMs[0].Billing; !b.Billable || b.Instances != 1 || b.InstanceClass != "up to 50 GB" || b.StorageBasis <= 0 {
		t.Fatalf("vault stats billing: %+v", stats)
	}
	t.Logf("vault stats:\n%s", e.mustCLI("vault", "stats"))
}

// TestRetention: with one daily point kept, three backups of today become
// one: the two older are soft-deleted, the newest never expires; a dry run
// changes nothing; a run with a short soft-delete period purges them.
func TestRetention(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("ret1", 9)); err != nil {
		t.Fatal(err)
	}
	var rps []string
	for i := 0; i < 3; i++ {
		if i > 0 {
			if err := vmfixture.Mutate(e.vmsRoot(), "ret1", int64(10*i), 1, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		rps = append(rps, e.backup("ret1").RecoveryPoint)
	}
	newestHash := diskHashes(t, filepath.Join(e.vmsRoot(), "ret1"))
	rules := []string{"--vm", "ret1", "--daily", "1", "--time-zone", "Europe/Berlin"}

	run := func(args ...string) workflows.RetentionResult {
		t.Helper()
		var res workflows.RetentionResult
		out := e.mustCLI(append(append([]string{"retention", "run", "--json"}, rules...), args...)...)
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("retention output %q: %v", out, err)
		}
		return res
	}
	res := run("--dry-run")
	if len(res.VMs) != 1 || strings.Join(res.VMs[0].Expired, " ") != rps[0]+" "+rps[1] || !res.DryRun {
		t.Fatalf("dry run: %+v", res)
	}
	if got := rowIDs(e.rpList("ret1")); len(got) != 3 {
		t.Fatalf("a dry run deleted: %v", got)
	}

	out := e.mustCLI(append([]string{"retention", "run"}, rules...)...)
	t.Logf("retention run:\n%s", out)
	t.Logf("rp list --deleted:\n%s", e.mustCLI("rp", "list", "--deleted"))
	if !strings.Contains(out, "soft-deleted "+rps[0]) || !strings.Contains(out, "retention: 1 VMs, soft-deleted 2 expired recovery points, purged 0") {
		t.Fatalf("retention run said:\n%s", out)
	}
	if got := rowIDs(e.rpList("ret1")); len(got) != 1 || got[0] != rps[2] {
		t.Fatalf("after retention: %v", got)
	}
	if del := rowIDs(e.rpList("--deleted")); strings.Join(del, " ") != rps[0]+" "+rps[1] {
		t.Fatalf("soft-deleted after retention: %v", del)
	}
	// Run again: the newest point is never expired, nothing is due yet.
	res = run()
	if len(res.VMs[0].Expired) != 0 || res.VMs[0].Kept != 1 || len(res.Purged) != 0 {
		t.Fatalf("second run: %+v", res)
	}
	// A short soft-delete period purges them.
	res = run("--keep-deleted-for", "1ms")
	if strings.Join(res.Purged, " ") != rps[0]+" "+rps[1] {
		t.Fatalf("purge: %+v", res)
	}
	if del := e.rpList("--deleted"); len(del) != 0 {
		t.Fatalf("still soft-deleted after purge: %+v", del)
	}
	e.failCLI("not found", "rp", "undelete", rps[0])
	e.restoreDisksMatch(rps[2], newestHash)

	// The schedule: created, then updated, then removed.
	if out := e.mustCLI("retention", "enable", "--at", "03:30", "--time-zone", "Europe/Berlin"); !strings.Contains(out, "created schedule retention: retention daily at 03:30 Europe/Berlin") {
		t.Fatalf("retention enable said %q", out)
	}
	if record := os.Getenv("VMVAULT_RECORD_HISTORIES"); record != "" { // histories for testsuite/replay
		e.recordHistory(record, "sync-schedule.json", workflows.SyncScheduleWorkflowID(workflows.RetentionScheduleID))
	}
	if out := e.mustCLI("retention", "enable", "--at", "04:15"); !strings.Contains(out, "updated schedule retention: retention daily at 04:15 UTC") {
		t.Fatalf("retention enable (update) said %q", out)
	}
	e.failCLI("want HH:MM", "retention", "enable", "--at", "25:00")
	e.mustCLI("retention", "disable")
	e.failCLI("retention is not enabled", "retention", "disable")
}
