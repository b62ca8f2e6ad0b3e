package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// GC's safety rule on a real vault: while a backup runs with a 30-hour
// limit, 'vault gc' with the default 25h grace exits non-zero with one line
// that names both durations and the setting, and a GC job started past the
// CLI refuses by itself, non-retryably; nothing is marked or deleted and
// the vault's points still restore. Once that backup has ended, a short
// grace is valid again and the GC frees the purged point's data.
func TestGCRefusesGraceWithinBackupLimit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, envOpts{initArgs: []string{"--pack-size", "4194304"}})
	e.startWorker(nil)
	for i, vm := range []string{"gone1", "keep1"} {
		if _, err := vmfixture.Create(e.vmsRoot(), smallSpec(vm, uint64(90+i))); err != nil {
			t.Fatal(err)
		}
	}
	gone := e.backup("gone1").RecoveryPoint
	keep := e.backup("keep1").RecoveryPoint
	keepHashes := diskHashes(t, filepath.Join(e.vmsRoot(), "keep1"))
	v := e.openVault()
	now := time.Now()
	if _, err := v.DeleteRecoveryPoint(ctx, gone, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if purged, err := v.Maint().PurgeDeleted(ctx, now.Add(2*time.Hour), time.Hour); err != nil || len(purged) != 1 {
		t.Fatalf("purge: %v %v", purged, err)
	}

	// A backup that stays running: its host has no agent, so its first
	// step waits in the host's queue. It was given a 30h limit.
	e.mustCLI("backup", "keep1", "--host", "nohost", "--timeout", "30h")
	c := e.tp.Client(t)
	defer c.TerminateWorkflow(ctx, workflows.BackupWorkflowID("keep1"), "", "test over")
	packs := e.objects("packs/")

	line := e.failCLI(activities.ErrTypeGCGraceTooShort, "vault", "gc", "--wait")
	t.Logf("vault gc: %s", line)
	for _, want := range []string{"grace period 25h0m0s", "30h0m0s", workflows.BackupWorkflowID("keep1"), "--grace (VMVAULT_GC_GRACE)"} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal %q does not say %q", line, want)
		}
	}
	e.failCLI(activities.ErrTypeGCGraceTooShort, "vault", "gc", "--grace", "1s")

	// Past the CLI's check, the job itself refuses before its mark.
	in := workflows.GCInput{Grace: 30 * time.Hour}
	run, err := c.ExecuteWorkflow(ctx, workflows.GCStartOptions("vmvault", in), workflows.CollectGarbage, in)
	if err != nil {
		t.Fatal(err)
	}
	err = run.Get(ctx, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != activities.ErrTypeGCGraceTooShort || !app.NonRetryable() {
		t.Fatalf("gc job with grace 30h beside a 30h backup: %v", err)
	}
	if got := e.objects("packs/"); !maps.Equal(got, packs) {
		t.Fatalf("refused gc changed packs: %d before, %d after", len(packs), len(got))
	}
	if gc := e.objects("gc/"); len(gc) != 0 {
		t.Fatalf("refused gc marked: %v", gc)
	}
	e.restoreDisksMatch(keep, keepHashes)

	// The backup ends: a short grace is fine again and frees gone1's data.
	if err := c.TerminateWorkflow(ctx, workflows.BackupWorkflowID("keep1"), "", "test: end the stuck backup"); err != nil {
		t.Fatal(err)
	}
	out := e.mustCLI("vault", "gc", "--grace", "1s", "--wait", "--json")
	var res workflows.GCResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("gc output %q: %v", out, err)
	}
	if res.Sweep.DeletedPacks == 0 || res.Sweep.FreedBytes <= 0 {
		t.Fatalf("gc with a valid grace freed nothing: %+v", res)
	}
	e.restoreDisksMatch(keep, keepHashes)
	e.mustCLI("vault", "check")
}
