package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// The instant-restore tier: backup --keep-snapshot keeps the snapshot's
// point-in-time image on the host (platform.Keeper) and the recovery point
// records it; a restore to a new VM on that host before it expires makes
// the VM from it, reading nothing from the vault.

// DefaultKeepFor is how long a kept snapshot is kept (Azure Backup's
// default instant-restore retention is two days).
const DefaultKeepFor = 48 * time.Hour

// PhaseKeep: the backup copies its snapshot into the kept image.
const PhaseKeep Phase = "keep-snapshot"

// keptSnapshots starts a backup's part of the tier: it removes the host's
// expired kept snapshots and says whether this backup keeps its own. From
// this version on the snapshot is always deleted (its image is kept as
// files instead), so in.KeepSnapshot is cleared; backups recorded before
// replay as they ran (the snapshot itself left in place, unrecorded).
// The cleanup is started here and awaited by done, so that the caller can
// overlap it with its next step.
func keptSnapshots(ctx workflow.Context, in *BackupVMInput, prog *Progress) (keep bool, done func()) {
	if workflow.GetVersion(ctx, "kept-snapshots", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return false, func() {}
	}
	keep, in.KeepSnapshot = in.KeepSnapshot, false
	// A cleanup that fails costs only space: two quick tries, then a note.
	cctx := workflow.WithRetryPolicy(hostOptions(ctx, in.Host), temporal.RetryPolicy{
		InitialInterval: time.Second, MaximumAttempts: 2, NonRetryableErrorTypes: activities.NonRetryable,
	})
	f := workflow.ExecuteActivity(cctx, hostAct.ExpireKept, activities.ExpireKeptInput{Now: workflow.Now(ctx)})
	return keep, func() {
		var out activities.ExpireKeptResult
		if err := f.Get(ctx, &out); err != nil {
			prog.note(fmt.Sprintf("warning: expired kept snapshots on host %s not removed (%v)", in.Host, rootMessage(err)))
		}
		for _, r := range out.Removed {
			prog.note(fmt.Sprintf("kept snapshot %s expired and was removed from host %s", r, in.Host))
		}
		prog.Notes = append(prog.Notes, out.Notes...)
	}
}

// keepSnapshot keeps the snapshot's image under the recovery point's id and
// returns the record for the recovery point; nil, with a note, when the
// platform cannot keep it (the backup does not fail for it).
func keepSnapshot(ctx workflow.Context, in BackupVMInput, keep bool, snap platform.Snapshot, id string, prog *Progress) *vault.KeptSnapshot {
	if !keep {
		return nil
	}
	prog.Phase = PhaseKeep
	keepFor := in.KeepFor
	if keepFor <= 0 {
		keepFor = DefaultKeepFor
	}
	ki := activities.KeepSnapshotInput{Snapshot: snap, ID: id, Expires: workflow.Now(ctx).Add(keepFor).UTC()}
	var k platform.KeptSnapshot
	err := workflow.ExecuteActivity(withSummary(diskOptions(ctx, in.Host, in.HeartbeatTimeout, 3), "keep snapshot"), hostAct.KeepSnapshot, ki).Get(ctx, &k)
	if err != nil {
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.Type() == activities.ErrTypeNotSupported {
			prog.note(fmt.Sprintf("--keep-snapshot: %s; this recovery point restores from the vault", app.Message()))
		} else {
			prog.note(fmt.Sprintf("warning: snapshot not kept (%v); this recovery point restores from the vault", rootMessage(err)))
		}
		return nil
	}
	k.Host = in.Host
	prog.note(fmt.Sprintf("snapshot kept on host %s until %s for instant restore", k.Host, k.Expires.Format(time.RFC3339)))
	v := vault.KeptSnapshot(k)
	return &v
}

// instantRestore makes a new VM from the recovery point's kept snapshot
// when there is one on this host, unexpired, and the vault is not asked
// for. done is false when the restore must read the vault; the job says why.
func instantRestore(ctx workflow.Context, in RestoreVMInput, info activities.RecoveryPointInfo, stage platform.RestoreStage, prog *Progress, res *RestoreVMResult) (done bool, err error) {
	rp := info.RecoveryPoint
	if in.Mode != RestoreNewVM || rp.Kept == nil {
		return false, nil
	}
	k := *rp.Kept
	if in.FromVault {
		prog.note(fmt.Sprintf("--from-vault: the snapshot kept on host %s is not used", k.Host))
		return false, nil
	}
	if workflow.GetVersion(ctx, "instant-restore", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return false, nil
	}
	switch {
	case k.Host != in.Host:
		prog.note(fmt.Sprintf("the snapshot is kept on host %s, and this restore runs on %s: restoring from the vault", k.Host, in.Host))
		return false, nil
	case !workflow.Now(ctx).Before(k.Expires):
		prog.note(fmt.Sprintf("the snapshot kept on host %s expired at %s: restoring from the vault", k.Host, k.Expires.Format(time.RFC3339)))
		return false, nil
	}
	prog.Phase = PhaseCreateVM
	spec := info.VM
	spec.Name, spec.Power, spec.Extension = in.TargetVM, platform.PowerStopped, platform.ExtensionStatus{}
	var created platform.VM
	ni := activities.NewVMFromKeptInput{VM: spec, Kept: platform.KeptSnapshot(k), Stage: stage}
	if err := workflow.ExecuteActivity(hostOptions(ctx, in.Host), hostAct.NewVMFromKept, ni).Get(ctx, &created); err != nil {
		var app *temporal.ApplicationError
		if temporal.IsCanceledError(err) || errors.As(err, &app) && (app.Type() == activities.ErrTypeVMExists || app.Type() == activities.ErrTypeBadRequest) {
			return false, err
		}
		prog.note(fmt.Sprintf("the snapshot kept on host %s cannot be used (%v): restoring from the vault", k.Host, rootMessage(err)))
		return false, nil
	}
	res.VM, res.Instant = created.Name, &k
	for _, d := range restoredDisks(info) {
		res.Disks = append(res.Disks, activities.RestoreDiskResult{Disk: d.Name, SizeBytes: d.SizeBytes})
		ds := prog.disk(d.Name)
		ds.State, ds.DoneBytes = DiskDone, d.SizeBytes
	}
	prog.note(fmt.Sprintf("instant restore from the kept snapshot on host %s: no data read from the vault", k.Host))
	prog.Phase = PhaseDone
	return true, nil
}
