package workflows

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// BackupVMInput asks for one backup of one VM.
type BackupVMInput struct {
	VM string `json:"vm"`
	// Host owns the VM; its queue runs the disk work.
	Host string `json:"host"`
	// Vault names the vault (for search attributes and messages).
	Vault string `json:"vault"`
	// Consistency wanted; default app-consistent (the platform falls back).
	Consistency platform.Consistency `json:"consistency,omitempty"`
	// KeepSnapshot keeps the snapshot as the instant-restore tier.
	KeepSnapshot bool `json:"keep_snapshot,omitempty"`
	// Limits default to DefaultLimits.
	Limits *Limits `json:"limits,omitempty"`
	// HeartbeatTimeout of disk transfers; default 2 minutes.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// BackupVMResult describes the recovery point a backup created.
type BackupVMResult struct {
	RecoveryPoint string             `json:"recovery_point"`
	Type          vault.BackupType   `json:"type"`
	Consistency   string             `json:"consistency"`
	Parent        string             `json:"parent,omitempty"`
	Totals        vault.DiskStats    `json:"totals"`
	Disks         []vault.DiskRecord `json:"disks"`
	Notes         []string           `json:"notes,omitempty"`
}

// BackupWorkflowID is the id of a VM's backup job. One id per VM is how
// Temporal guarantees one backup per VM at a time: starting a second while
// one runs is refused atomically by the server.
func BackupWorkflowID(vm string) string { return "backup-" + vm }

// BackupVM backs up a VM: describe and validate it, make sure the backup
// extension runs (running VMs), take a snapshot, move every disk's changed
// blocks into the vault in parallel, write the recovery point, and delete the
// snapshot, even when something failed or the job was cancelled.
func BackupVM(ctx workflow.Context, in BackupVMInput) (res BackupVMResult, err error) {
	if in.Consistency == "" {
		in.Consistency = platform.AppConsistent
	}
	limits := DefaultLimits
	if in.Limits != nil {
		limits = *in.Limits
	}
	if in.HeartbeatTimeout <= 0 {
		in.HeartbeatTimeout = 2 * time.Minute
	}
	log := workflow.GetLogger(ctx)
	prog := &Progress{Kind: KindBackup, VM: in.VM, Phase: PhaseValidating, StartedAt: workflow.Now(ctx)}
	if err := trackProgress(ctx, prog); err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			prog.Phase, prog.Error = PhaseFailed, err.Error()
		}
	}()
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVM.ValueSet(in.VM), AttrVault.ValueSet(in.Vault), AttrKind.ValueSet(KindBackup))
	if in.VM == "" || in.Host == "" {
		return res, temporal.NewNonRetryableApplicationError("backup: vm and host are required", activities.ErrTypeBadRequest, nil)
	}

	var h *activities.Host
	var va *activities.Vault
	hostCtx := hostOptions(ctx, in.Host)
	centralCtx := centralOptions(ctx)

	var vm platform.VM
	if err := workflow.ExecuteActivity(hostCtx, h.DescribeVM, activities.VMInput{VM: in.VM}).Get(ctx, &vm); err != nil {
		return res, err
	}
	if err := ValidateVM(vm, limits); err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeLimitExceeded, nil)
	}
	prog.Disks = nil
	for _, d := range vm.Disks {
		if d.Role != platform.DiskTemp {
			ds := prog.disk(d.Name)
			ds.SizeBytes = d.SizeBytes
		}
	}

	want := in.Consistency
	if vm.Power == platform.PowerRunning {
		prog.Phase = PhaseExtension
		var st platform.ExtensionStatus
		if err := workflow.ExecuteActivity(hostCtx, h.EnsureExtension, activities.VMInput{VM: in.VM}).Get(ctx, &st); err != nil {
			// Without the extension nothing can be quiesced: back up crash-consistent, and say so.
			note := fmt.Sprintf("backup extension unavailable (%v): falling back to a crash-consistent snapshot", rootMessage(err))
			log.Warn(note)
			prog.Notes = append(prog.Notes, note)
			want = platform.CrashConsistent
		}
	} else {
		want = platform.CrashConsistent
	}

	prog.Phase = PhaseSnapshot
	snapID := "vmvault-" + workflow.GetInfo(ctx).WorkflowExecution.RunID
	var snap platform.Snapshot
	if err := workflow.ExecuteActivity(hostCtx, h.CreateSnapshot, activities.SnapshotInput{VM: in.VM, ID: snapID, Consistency: want}).Get(ctx, &snap); err != nil {
		return res, err
	}
	prog.Consistency = string(snap.Consistency)
	prog.Notes = append(prog.Notes, snap.Notes...)
	defer func() {
		if in.KeepSnapshot && err == nil {
			return
		}
		// Cleanup runs even when the job failed or was cancelled.
		prog.Phase = PhaseCleanup
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		if derr := workflow.ExecuteActivity(hostOptions(dctx, in.Host), h.DeleteSnapshot, snap).Get(dctx, nil); derr != nil {
			log.Error("snapshot not deleted", "snapshot", snap.ID, "error", derr)
			if err == nil {
				// The recovery point is saved and good: the job succeeds with a
				// warning rather than failing and inviting a second backup.
				note := fmt.Sprintf("warning: snapshot %s was not deleted (%v): remove it by hand", snap.ID, rootMessage(derr))
				prog.Notes = append(prog.Notes, note)
				res.Notes = append(res.Notes, note)
			} else {
				err = withCleanupError(err, fmt.Errorf("delete snapshot %s: %w", snap.ID, derr))
			}
		}
		if err == nil {
			prog.Phase = PhaseDone
		}
	}()

	var prep activities.PrepareBackupResult
	names := backedUpDisks(vm)
	if err := workflow.ExecuteActivity(centralCtx, va.PrepareBackup, activities.PrepareBackupInput{VM: in.VM, Disks: names}).Get(ctx, &prep); err != nil {
		return res, err
	}
	res.Parent = prep.Parent
	res.Type = vault.BackupFull
	if prep.Parent != "" {
		res.Type = vault.BackupIncremental
	}
	prog.BackupType = string(res.Type)

	prog.Phase = PhaseTransfer
	xferCtx := diskOptions(ctx, in.Host, in.HeartbeatTimeout, 20)
	xferCtx, cancelXfer := workflow.WithCancel(xferCtx)
	defer cancelXfer()
	futures := make([]workflow.Future, len(names))
	for i, name := range names {
		ti := activities.TransferDiskInput{VM: in.VM, Snapshot: snap, Disk: name}
		if root, ok := prep.ParentRoots[name]; ok {
			ti.Parent = &root
			ti.ParentSnapshotToken = prep.ParentTokens[name]
		}
		prog.disk(name).State = "running"
		futures[i] = workflow.ExecuteActivity(xferCtx, h.TransferDisk, ti)
	}
	// Wait for all disks; on the first failure cancel the rest.
	results := make([]activities.TransferDiskResult, len(names))
	var firstErr error
	sel := workflow.NewSelector(ctx)
	for i := range futures {
		sel.AddFuture(futures[i], func(f workflow.Future) {
			var r activities.TransferDiskResult
			if err := f.Get(ctx, &r); err != nil {
				prog.disk(names[i]).State = "failed"
				if firstErr == nil {
					firstErr = err
					cancelXfer()
				}
				return
			}
			results[i] = r
			ds := prog.disk(names[i])
			ds.State = "done"
			ds.DoneBytes, ds.SizeBytes = r.Result.Size, r.Result.Size
			ds.ScannedBytes, ds.ChangedBytes = r.Result.Stats.ScannedBytes, r.Result.Stats.ChangedBytes
			ds.UploadedBytes, ds.StoredBytes = r.Result.Stats.NewBytes, r.Result.Stats.StoredBytes
			prog.Notes = append(prog.Notes, r.Notes...)
		})
	}
	for range futures {
		sel.Select(ctx)
	}
	if firstErr != nil {
		return res, firstErr
	}

	prog.Phase = PhaseCommit
	var suffix string
	if err := workflow.SideEffect(ctx, func(workflow.Context) any { return uuid.NewString()[:6] }).Get(&suffix); err != nil {
		return res, err
	}
	started := prog.StartedAt.UTC()
	rp := vault.RecoveryPoint{
		ID: started.Format("20060102T150405Z") + "-" + suffix, VM: in.VM, Host: in.Host,
		Type: res.Type, Consistency: string(snap.Consistency), Parent: prep.Parent,
		StartedAt: started, CompletedAt: workflow.Now(ctx).UTC(),
		Job: workflow.GetInfo(ctx).WorkflowExecution.ID + "/" + workflow.GetInfo(ctx).WorkflowExecution.RunID,
	}
	for i, name := range names {
		d := diskByName(vm, name)
		r := results[i].Result
		rp.Disks = append(rp.Disks, vault.DiskRecord{Name: name, Role: string(d.Role), LUN: d.LUN, SizeBytes: r.Size, Root: r.Root, Method: r.Method, Stats: r.Stats})
	}
	var ref string
	if err := workflow.ExecuteActivity(centralCtx, va.SaveRecoveryPoint, activities.SaveRecoveryPointInput{RecoveryPoint: rp, VM: vm}).Get(ctx, &ref); err != nil {
		return res, err
	}
	res.RecoveryPoint, res.Consistency, res.Disks, res.Totals = ref, rp.Consistency, rp.Disks, rp.Totals()
	res.Notes = prog.Notes
	prog.RecoveryPoint = ref
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrRecoveryPoint.ValueSet(ref), AttrBackupType.ValueSet(string(res.Type)), AttrConsistency.ValueSet(res.Consistency))
	prog.Phase = PhaseDone
	return res, nil
}

// ValidateVM checks the seed's limits before any data moves.
func ValidateVM(vm platform.VM, l Limits) error {
	data := 0
	for _, d := range vm.Disks {
		if d.Role == platform.DiskData {
			data++
		}
		if d.Role != platform.DiskTemp && d.SizeBytes > l.MaxDiskBytes {
			return fmt.Errorf("vm %s: disk %s is %d GB, over the limit of %d GB per disk", vm.Name, d.Name, d.SizeBytes>>30, l.MaxDiskBytes>>30)
		}
	}
	if data > l.MaxDataDisks {
		return fmt.Errorf("vm %s has %d data disks, over the limit of %d", vm.Name, data, l.MaxDataDisks)
	}
	return nil
}

func backedUpDisks(vm platform.VM) []string {
	var names []string
	for _, d := range vm.Disks {
		if d.Role != platform.DiskTemp {
			names = append(names, d.Name)
		}
	}
	return names
}

func diskByName(vm platform.VM, name string) platform.Disk {
	for _, d := range vm.Disks {
		if d.Name == name {
			return d
		}
	}
	return platform.Disk{Name: name}
}

// nonRetryable lists the error types no retry can fix.
var nonRetryable = []string{
	activities.ErrTypeVMNotFound, activities.ErrTypeVMExists, activities.ErrTypeVMRunning, activities.ErrTypeInvalidVM,
	activities.ErrTypeDiskBusy, activities.ErrTypeDiskChanged, activities.ErrTypeNotSupported,
	activities.ErrTypeCorruptData, activities.ErrTypeMissingData, activities.ErrTypeWrongKey, activities.ErrTypeNoVault,
	activities.ErrTypeRecoveryPointNotFound, activities.ErrTypeLimitExceeded, activities.ErrTypeBadRequest,
}

// hostOptions: short platform calls on the VM's host.
func hostOptions(ctx workflow.Context, host string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              activities.HostQueue(host),
		ScheduleToStartTimeout: 10 * time.Minute, // no worker for that host: fail, don't hang for a day
		StartToCloseTimeout:    5 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 5,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
}

// diskOptions: long disk transfers on the VM's host, heartbeating, retried
// (and resumed) when a worker dies, and told when the job is cancelled.
func diskOptions(ctx workflow.Context, host string, heartbeat time.Duration, attempts int32) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           activities.HostQueue(host),
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: attempts,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
}

// centralOptions: vault work on the workflow's own queue.
func centralOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
			NonRetryableErrorTypes: nonRetryable,
		},
	})
}

// trackProgress answers the progress query from prog and folds the disk
// progress signals of activities into it.
func trackProgress(ctx workflow.Context, prog *Progress) error {
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return *prog, nil }); err != nil {
		return err
	}
	ch := workflow.GetSignalChannel(ctx, activities.SignalDiskProgress)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var p activities.DiskProgress
			if !ch.Receive(ctx, &p) {
				return
			}
			ds := prog.disk(p.Disk)
			if ds.State == "done" || ds.State == "failed" {
				continue
			}
			ds.DiskProgress = p
			ds.State = "running"
		}
	})
	return nil
}

// withCleanupError adds a failed cleanup to a job's error. errors.Join would
// hide the job error's type (the failure converter sends only the outer
// error's type, "joinError", retryable), so the type and retryability that
// callers match on are kept, and a cancelled job stays cancelled.
func withCleanupError(err, cerr error) error {
	var app *temporal.ApplicationError
	switch {
	case err == nil:
		return cerr
	case temporal.IsCanceledError(err):
		return err // the cleanup failure is logged
	case errors.As(err, &app):
		return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("%s; %v", app.Message(), cerr), app.Type(),
			temporal.ApplicationErrorOptions{NonRetryable: app.NonRetryable(), Cause: err})
	default:
		return errors.Join(err, cerr)
	}
}

// rootMessage is the innermost message of an activity error, for notes.
func rootMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Error()
	}
	return err.Error()
}
