package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/vault"
)

// GCInput asks for a garbage collection of the vault.
type GCInput struct {
	// Grace is how long the job waits between mark and sweep, and how long
	// a pack must have been a candidate before it is deleted (0: 25h). It
	// must exceed the longest limit of a running backup (CheckGCGrace):
	// the job refuses to start otherwise.
	Grace            time.Duration `json:"grace,omitempty"`
	DryRun           bool          `json:"dry_run,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// RepackBelowPercent (0: 50) and NoRepack tune the mark's repacking.
	RepackBelowPercent int  `json:"repack_below_percent,omitempty"`
	NoRepack           bool `json:"no_repack,omitempty"`
}

// GCResult is what a garbage collection found and freed.
type GCResult struct {
	Mark  vault.GCMarkReport  `json:"mark"`
	Sweep vault.GCSweepReport `json:"sweep"`
}

// CollectGarbage marks the packs nothing references (they leave dedup at
// once), waits out the grace period on a durable timer (the job shows as
// waiting in the UI, and survives worker restarts), then sweeps: candidates
// still unreferenced are deleted. A dry run marks and sweeps without
// writing and does not wait. One runs at a time (id vault-gc). Before the
// mark it refuses, non-retryably, a grace period that is not longer than
// the longest limit of a running backup (activities.CheckGCGrace); the
// sweep checks it again.
func CollectGarbage(ctx workflow.Context, in GCInput) (res GCResult, err error) {
	prog, err := newProgress(ctx, KindGC, "")
	if err != nil {
		return res, err
	}
	defer func() { prog.fail(err) }()
	if in.Grace < 0 {
		return res, badRequest("vault gc: negative grace period %s", in.Grace)
	}
	grace := in.Grace
	if grace == 0 {
		grace = vault.DefaultGCGrace
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet(string(KindGC)))
	if err := checkGrace(ctx, in, grace); err != nil {
		return res, err
	}
	act := activities.GCInput{Grace: grace, DryRun: in.DryRun, HeartbeatTimeout: in.HeartbeatTimeout,
		RepackBelowPercent: in.RepackBelowPercent, NoRepack: in.NoRepack}

	prog.Phase = PhaseMarking
	var mark activities.GCMarkResult
	if err := workflow.ExecuteActivity(vaultJobOptions(ctx, in.HeartbeatTimeout), vaultAct.GCMark, act).Get(ctx, &mark); err != nil {
		return res, err
	}
	res.Mark = mark.GCMarkReport
	act.Vault, act.MarkedAt = mark.Vault, mark.MarkedAt
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVault.ValueSet(mark.Vault.Location))
	summary := fmt.Sprintf("vault gc: %d of %d packs unreferenced (%d bytes), out of dedup", res.Mark.Candidates, res.Mark.Packs, res.Mark.CandidateBytes)
	prog.note(summary)
	if !in.DryRun && res.Mark.Candidates > 0 {
		prog.Phase = PhaseGrace
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s; sweeping after the grace period (%s), at %s",
			summary, grace, workflow.Now(ctx).Add(grace).UTC().Format(time.RFC3339)))
		if err := workflow.Sleep(ctx, grace); err != nil {
			return res, err
		}
	}

	prog.Phase = PhaseSweeping
	if err := workflow.ExecuteActivity(vaultJobOptions(ctx, in.HeartbeatTimeout), vaultAct.GCSweep, act).Get(ctx, &res.Sweep); err != nil {
		return res, err
	}
	summary = fmt.Sprintf("vault gc: %d packs deleted, %d bytes freed; %d candidates referenced again and kept", res.Sweep.DeletedPacks, res.Sweep.FreedBytes, res.Sweep.Referenced)
	if res.Sweep.Locked > 0 {
		summary += fmt.Sprintf("; %d packs under object lock kept until %s at the latest", res.Sweep.Locked, res.Sweep.LockedUntil.UTC().Format(time.RFC3339))
	}
	if in.DryRun {
		summary = fmt.Sprintf("vault gc (dry run): %d packs (%d bytes) would be candidates", res.Mark.Candidates, res.Mark.CandidateBytes)
	}
	workflow.SetCurrentDetails(ctx, summary)
	prog.note(summary)
	prog.Phase = PhaseDone
	return res, nil
}

// checkGrace applies GC's safety rule before the mark: grace must be longer
// than the longest limit any running backup was given. A dry run deletes
// nothing and is not checked; jobs recorded before the rule replay without
// it.
func checkGrace(ctx workflow.Context, in GCInput, grace time.Duration) error {
	if in.DryRun || workflow.GetVersion(ctx, "gc-grace-rule", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	var l activities.BackupLimit
	if err := workflow.ExecuteActivity(centralOptions(ctx), vaultAct.LongestBackupLimit, activities.BackupLimitInput{}).Get(ctx, &l); err != nil {
		return err
	}
	return activities.CheckGCGrace(grace, l)
}
