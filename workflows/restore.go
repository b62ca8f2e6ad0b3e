package workflows

import (
	"fmt"
	"path"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// RestoreVMInput asks to restore a recovery point.
type RestoreVMInput struct {
	// RecoveryPoint is "<vm>/<id>" or an id.
	RecoveryPoint string      `json:"recovery_point"`
	Mode          RestoreMode `json:"mode"`
	// TargetVM is the VM to create (new-vm) or whose disks to replace
	// (replace; default the recovery point's own VM).
	TargetVM string `json:"target_vm,omitempty"`
	// TargetDir receives the disk images (disks).
	TargetDir string `json:"target_dir,omitempty"`
	// Force lets a disks-only restore replace existing files.
	Force bool `json:"force,omitempty"`
	// DiscardReplaced deletes the replaced disks (replace) instead of
	// keeping them beside the new ones.
	DiscardReplaced bool `json:"discard_replaced,omitempty"`
	// FromVault restores from the vault even when the recovery point's
	// snapshot is kept on the host (new-vm).
	FromVault bool `json:"from_vault,omitempty"`
	// FromSecondary reads the recovery point from the vault's copy at its
	// secondary location (cross-site restore).
	FromSecondary bool `json:"from_secondary,omitempty"`
	// Host is where the target lives.
	Host string `json:"host"`
	// HeartbeatTimeout of disk restores; default 2 minutes.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Limit bounds the job (default 24h), enforced inside the workflow so a
	// restore stopped by it still removes what it staged.
	Limit time.Duration `json:"limit,omitempty"`
}

// RestoreVMResult says what was restored where.
type RestoreVMResult struct {
	RecoveryPoint string                         `json:"recovery_point"`
	Mode          RestoreMode                    `json:"mode"`
	VM            string                         `json:"vm,omitempty"`
	Vault         string                         `json:"vault"`
	Disks         []activities.RestoreDiskResult `json:"disks"`
	// Paths of the restored images (disks mode), by disk.
	Paths map[string]string `json:"paths,omitempty"`
	// Kept says where each replaced disk was kept (replace mode).
	Kept map[string]string `json:"kept,omitempty"`
	// Instant is the kept snapshot the new VM was made from, without
	// reading the vault (instant restore); nil when the vault was read.
	Instant *vault.KeptSnapshot `json:"instant,omitempty"`
	// Notes say what the job chose and why (instant or from the vault).
	Notes []string `json:"notes,omitempty"`
}

// RestoreVM restores a recovery point to a new VM, over the disks of an
// existing stopped VM, or as disk images in a directory. Disks are restored
// in parallel into staging files beside their targets, every block verified
// against its id; only when all of them are staged does one commit put them
// in place. A restore that fails removes what it staged (and a new VM it
// prepared): the targets stay as they were.
func RestoreVM(ctx workflow.Context, in RestoreVMInput) (res RestoreVMResult, err error) {
	prog, err := newProgress(ctx, KindRestore, "")
	if err != nil {
		return res, err
	}
	defer func() { prog.fail(err) }()
	if err := in.check(); err != nil {
		return res, err
	}
	ctx, expired, stop := jobLimit(ctx, KindRestore, "of "+in.RecoveryPoint+" to host "+in.Host, in.Limit)
	defer stop()
	defer func() { err = expired(err) }()
	res.Mode = in.Mode
	var info activities.RecoveryPointInfo
	if err := workflow.ExecuteActivity(vaultStepOptions(ctx), vaultAct.LoadRecoveryPoint, activities.LoadRecoveryPointInput{Ref: in.RecoveryPoint, FromSecondary: in.FromSecondary}).Get(ctx, &info); err != nil {
		return res, err
	}
	rp := info.RecoveryPoint
	res.RecoveryPoint, res.Vault = rp.Ref(), info.Vault.Location
	prog.VM, prog.RecoveryPoint = rp.VM, rp.Ref()
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVM.ValueSet(rp.VM), AttrVault.ValueSet(info.Vault.Location), AttrKind.ValueSet(string(KindRestore)),
		AttrRecoveryPoint.ValueSet(rp.Ref()), AttrConsistency.ValueSet(rp.Consistency), AttrBackupType.ValueSet(string(rp.Type)))
	disks := restoredDisks(info)
	names := make([]string, len(disks))
	for i, d := range disks {
		names[i] = d.Name
		prog.disk(d.Name).SizeBytes = d.SizeBytes
	}
	stage := platform.RestoreStage(workflow.GetInfo(ctx).WorkflowExecution.ID)
	if done, err := instantRestore(ctx, in, info, stage, prog, &res); done || err != nil {
		res.Notes = prog.Notes
		return res, err
	}
	target, err := prepareTarget(ctx, in, info, names, stage, prog)
	if err != nil {
		return res, err
	}
	res.VM = target.VM
	defer func() {
		if err != nil {
			err = abortRestore(ctx, in.Host, target, stage, err)
		}
	}()
	workflow.SetCurrentDetails(ctx, restoreSummary(in))
	if res.Disks, err = restoreDisks(ctx, in, info, target, stage, names, prog); err != nil {
		return res, err
	}

	prog.Phase = PhaseCommitDisks
	commit := activities.CommitRestoreInput{Target: target, Stage: stage, Sizes: map[string]int64{}, DiscardReplaced: in.DiscardReplaced}
	for _, d := range res.Disks {
		commit.Sizes[d.Disk] = d.SizeBytes
	}
	var done activities.CommitRestoreResult
	if err := workflow.ExecuteActivity(hostOptions(ctx, in.Host), hostAct.CommitRestore, commit).Get(ctx, &done); err != nil {
		return res, err
	}
	res.Paths, res.Kept = done.Paths, done.Kept
	for _, d := range res.Disks {
		if kept := done.Kept[d.Disk]; kept != "" {
			prog.note(fmt.Sprintf("disk %s: the replaced image is kept at %s", d.Disk, kept))
		}
	}
	prog.Phase = PhaseDone
	res.Notes = prog.Notes
	return res, nil
}

// check fills in defaults and refuses input that can never work.
func (in *RestoreVMInput) check() error {
	if in.HeartbeatTimeout <= 0 {
		in.HeartbeatTimeout = 2 * time.Minute
	}
	switch in.Mode {
	case RestoreNewVM:
		if in.TargetVM == "" || in.TargetDir != "" {
			return badRequest("restore new-vm: needs a new vm name and no directory")
		}
	case RestoreReplace:
		if in.TargetDir != "" {
			return badRequest("restore replace: takes no directory")
		}
	case RestoreDisks:
		if in.TargetDir == "" || in.TargetVM != "" || !path.IsAbs(in.TargetDir) {
			return badRequest("restore disks: needs an absolute target directory and no vm")
		}
	default:
		return badRequest("restore: unknown mode %q (want %s, %s or %s)", in.Mode, RestoreNewVM, RestoreReplace, RestoreDisks)
	}
	if in.Host == "" || in.RecoveryPoint == "" {
		return badRequest("restore: recovery point and host are required")
	}
	return nil
}

// restoredDisks: the backed-up disks of the recovery point, and its VM's
// temp disk (never backed up), which comes back empty.
func restoredDisks(info activities.RecoveryPointInfo) []vault.DiskRecord {
	disks := append([]vault.DiskRecord(nil), info.RecoveryPoint.Disks...)
	for _, d := range info.VM.Disks {
		if d.Role == platform.DiskTemp {
			disks = append(disks, vault.DiskRecord{Name: d.Name, Role: string(d.Role), SizeBytes: d.SizeBytes})
		}
	}
	return disks
}

// prepareTarget checks the restore's target, and reserves the new VM, before
// any data moves.
func prepareTarget(ctx workflow.Context, in RestoreVMInput, info activities.RecoveryPointInfo, names []string, stage platform.RestoreStage, prog *Progress) (activities.RestoreTarget, error) {
	hostCtx := hostOptions(ctx, in.Host)
	rp := info.RecoveryPoint
	switch in.Mode {
	case RestoreNewVM:
		prog.Phase = PhaseCreateVM
		spec := info.VM
		spec.Name, spec.Power, spec.Extension = in.TargetVM, platform.PowerStopped, platform.ExtensionStatus{}
		spec.Disks = append([]platform.Disk(nil), spec.Disks...)
		for i := range spec.Disks {
			spec.Disks[i].File, spec.Disks[i].Format = "", "" // the target platform chooses
		}
		var created platform.VM
		if err := workflow.ExecuteActivity(hostCtx, hostAct.PrepareNewVM, activities.PrepareNewVMInput{VM: spec, Stage: stage}).Get(ctx, &created); err != nil {
			return activities.RestoreTarget{}, err
		}
		for _, d := range info.VM.Disks {
			if c := diskByName(created, d.Name); d.Format != "" && c.Format != "" && c.Format != d.Format {
				prog.note(fmt.Sprintf("disk %s: restored as a %s image (the backed-up vm had %s; qemu-img convert -O %s converts it)", d.Name, c.Format, d.Format, d.Format))
			}
		}
		return activities.RestoreTarget{VM: created.Name}, nil
	case RestoreReplace:
		if in.TargetVM == "" {
			in.TargetVM = rp.VM // the VM the recovery point came from
		}
		var target platform.VM
		if err := workflow.ExecuteActivity(hostCtx, hostAct.DescribeVM, activities.VMInput{VM: in.TargetVM}).Get(ctx, &target); err != nil {
			return activities.RestoreTarget{}, err
		}
		if target.Power != platform.PowerStopped {
			return activities.RestoreTarget{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("restore replace: vm %s is %s: stop it first", in.TargetVM, target.Power), activities.ErrTypeVMRunning, nil)
		}
		for _, n := range names {
			if diskByName(target, n).Role == "" {
				return activities.RestoreTarget{}, badRequest("restore replace: vm %s has no disk %s (recovery point %s)", in.TargetVM, n, rp.Ref())
			}
		}
		return activities.RestoreTarget{VM: in.TargetVM}, nil
	default:
		t := activities.RestoreTarget{Dir: in.TargetDir, Force: in.Force}
		err := workflow.ExecuteActivity(hostCtx, hostAct.CheckRestoreTarget, activities.CheckRestoreTargetInput{Target: t, Disks: names}).Get(ctx, nil)
		return t, err
	}
}

// restoreDisks stages every disk in parallel; the first failure cancels the rest.
func restoreDisks(ctx workflow.Context, in RestoreVMInput, info activities.RecoveryPointInfo, target activities.RestoreTarget, stage platform.RestoreStage, names []string, prog *Progress) ([]activities.RestoreDiskResult, error) {
	prog.Phase = PhaseRestoreDisks
	dctx := diskOptions(ctx, in.Host, in.HeartbeatTimeout, 10)
	results := make([]activities.RestoreDiskResult, len(names))
	err := eachDisk(dctx, names, func(ctx workflow.Context, name string) workflow.Future {
		prog.disk(name).State = DiskRunning
		ri := activities.RestoreDiskInput{Vault: info.Vault, RecoveryPoint: info.RecoveryPoint.Ref(), Disk: name, Target: target, Stage: stage}
		return workflow.ExecuteActivity(withSummary(ctx, "disk "+name), hostAct.RestoreDisk, ri)
	}, func(i int, f workflow.Future) error {
		ds := prog.disk(names[i])
		if err := f.Get(ctx, &results[i]); err != nil {
			ds.State = DiskFailed
			return err
		}
		ds.State, ds.DoneBytes = DiskDone, results[i].SizeBytes
		return nil
	})
	return results, err
}

// abortRestore is a failed restore's compensation: on a disconnected
// context (it runs after a cancel too) it removes what the restore staged,
// and a new VM it prepared, and returns the job's error.
func abortRestore(ctx workflow.Context, host string, target activities.RestoreTarget, stage platform.RestoreStage, err error) error {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	in := activities.AbortRestoreInput{Target: target, Stage: stage}
	if aerr := workflow.ExecuteActivity(hostOptions(dctx, host), hostAct.AbortRestore, in).Get(dctx, nil); aerr != nil {
		workflow.GetLogger(ctx).Error("restore not cleaned up", "stage", stage, "error", aerr)
		return withCleanupError(err, fmt.Errorf("remove staged restore %s: %w", stage, aerr))
	}
	return err
}
