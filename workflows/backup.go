package workflows

import (
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
	// Consistency wanted; default app-consistent (the platform falls back).
	// Crash-consistent skips the backup extension.
	Consistency platform.Consistency `json:"consistency,omitempty"`
	// KeepSnapshot keeps the snapshot's point-in-time image on the host as
	// the instant-restore tier (platform.Keeper), for KeepFor (default
	// DefaultKeepFor).
	KeepSnapshot bool          `json:"keep_snapshot,omitempty"`
	KeepFor      time.Duration `json:"keep_for,omitempty"`
	// Limits default to DefaultLimits.
	Limits *Limits `json:"limits,omitempty"`
	// HeartbeatTimeout of disk transfers; default 2 minutes.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Limit bounds the job (default 24h), enforced inside the workflow so
	// the snapshot is still removed when it passes.
	Limit time.Duration `json:"limit,omitempty"`
}

// BackupVMResult describes the recovery point a backup created.
type BackupVMResult struct {
	RecoveryPoint string               `json:"recovery_point"`
	Type          vault.BackupType     `json:"type"`
	Consistency   platform.Consistency `json:"consistency"`
	Parent        string               `json:"parent,omitempty"`
	Vault         string               `json:"vault"`
	Totals        vault.DiskStats      `json:"totals"`
	Disks         []vault.DiskRecord   `json:"disks"`
	Notes         []string             `json:"notes,omitempty"`
	// Kept is the snapshot kept for instant restore (--keep-snapshot).
	Kept *vault.KeptSnapshot `json:"kept,omitempty"`
}

// Activity method values: the workflows call activities through them.
var (
	hostAct  *activities.HostActivities
	vaultAct *activities.VaultActivities
)

// BackupVM backs up a VM: describe and validate it, make sure the backup
// extension runs (running VMs), take a snapshot, move every disk's changed
// blocks into the vault in parallel, write the recovery point, and delete the
// snapshot, even when something failed or the job was cancelled.
func BackupVM(ctx workflow.Context, in BackupVMInput) (res BackupVMResult, err error) {
	prog, err := newProgress(ctx, KindBackup, in.VM)
	if err != nil {
		return res, err
	}
	defer func() { prog.fail(err) }()
	limits, err := in.check()
	if err != nil {
		return res, err
	}
	ctx, expired, stop := jobLimit(ctx, KindBackup, "of vm "+in.VM+" on host "+in.Host, in.Limit)
	defer stop()
	defer func() { err = expired(err) }()
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVM.ValueSet(in.VM), AttrKind.ValueSet(string(KindBackup)))
	hostCtx := hostOptions(ctx, in.Host)
	// From this version, steps that do not depend on each other overlap:
	// the kept-snapshot cleanup with describing the VM, and the request for
	// replication with deleting the snapshot (each a Temporal round trip).
	overlap := workflow.GetVersion(ctx, "overlap-steps", workflow.DefaultVersion, 1) == 1
	keep, keptCleaned := keptSnapshots(ctx, &in, prog)
	if !overlap {
		keptCleaned()
	}

	var vm platform.VM
	if err := workflow.ExecuteActivity(hostCtx, hostAct.DescribeVM, activities.VMInput{VM: in.VM}).Get(ctx, &vm); err != nil {
		return res, err
	}
	if overlap {
		keptCleaned()
	}
	if err := ValidateVM(vm, limits); err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeLimitExceeded, nil)
	}
	names := backedUpDisks(vm)
	for _, d := range vm.Disks {
		if d.Role != platform.DiskTemp {
			prog.disk(d.Name).SizeBytes = d.SizeBytes
		}
	}
	want := quiesce(ctx, in, vm, prog)

	var snap platform.Snapshot
	var replicated func() // overlap: the replication request, answered after the cleanup
	cleanup := func() { err = endBackup(ctx, in, snap, prog, &res, err, replicated) }
	// From this version the cleanup is in place before the snapshot is
	// asked for (see takeSnapshot).
	early := workflow.GetVersion(ctx, "snapshot-cleanup-first", workflow.DefaultVersion, 1) == 1
	if early {
		snap = plannedSnapshot(ctx, in)
		defer cleanup()
	}
	made, err := takeSnapshot(ctx, in, want, early, prog)
	if err != nil {
		return res, err
	}
	if snap = made; !early {
		defer cleanup()
	}

	var prep activities.PrepareBackupResult
	if err := workflow.ExecuteActivity(vaultStepOptions(ctx), vaultAct.PrepareBackup, activities.PrepareBackupInput{VM: in.VM, Disks: names}).Get(ctx, &prep); err != nil {
		return res, err
	}
	// The job is pinned to this vault from here on.
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVault.ValueSet(prep.Vault.Location))
	res.Parent, res.Vault, res.Type = prep.Parent, prep.Vault.Location, vault.BackupFull
	if prep.Parent != "" {
		res.Type = vault.BackupIncremental
	}
	prog.BackupType = string(res.Type)
	prog.Notes = append(prog.Notes, prep.Notes...) // state only: no command, nothing to version
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("backup %s → %s, %s", in.VM, res.Type, snap.Consistency))

	results, err := transferDisks(ctx, in, snap, prep, names, prog)
	if err != nil {
		return res, err
	}
	if res, err = commitBackup(ctx, in, vm, snap, prep, results, prog, res, keep); err != nil {
		return res, err
	}
	// The saved point goes to the secondary; with overlap the request is
	// answered after the snapshot's cleanup (the deferred call above).
	if replicated = startReplication(ctx, prep.Vault, res.RecoveryPoint, prog); replicated != nil && !overlap {
		replicated()
		replicated = nil
		res.Notes = prog.Notes
	}
	return res, nil
}

// check fills in defaults and refuses input that can never work.
func (in *BackupVMInput) check() (Limits, error) {
	limits := DefaultLimits
	if in.Limits != nil {
		limits = *in.Limits
	}
	if in.HeartbeatTimeout <= 0 {
		in.HeartbeatTimeout = 2 * time.Minute
	}
	if in.Consistency == "" {
		in.Consistency = platform.AppConsistent
	}
	if in.VM == "" || in.Host == "" {
		return limits, badRequest("backup: vm and host are required")
	}
	if !in.Consistency.Valid() {
		return limits, badRequest("backup: consistency %q: want %s, %s or %s", in.Consistency, platform.AppConsistent, platform.FileConsistent, platform.CrashConsistent)
	}
	return limits, nil
}

// quiesce decides the consistency to ask the snapshot for: a running VM
// asked for app- or file-consistency needs the backup extension; without it
// (or when crash-consistency is asked for, or the VM is stopped) the
// snapshot is crash-consistent, and the job says why.
func quiesce(ctx workflow.Context, in BackupVMInput, vm platform.VM, prog *Progress) platform.Consistency {
	if vm.Power != platform.PowerRunning || in.Consistency == platform.CrashConsistent {
		return platform.CrashConsistent
	}
	prog.Phase = PhaseExtension
	var st platform.ExtensionStatus
	if err := workflow.ExecuteActivity(hostOptions(ctx, in.Host), hostAct.EnsureExtension, activities.VMInput{VM: in.VM}).Get(ctx, &st); err != nil {
		// Without the extension nothing can be quiesced: back up crash-consistent, and say so.
		note := fmt.Sprintf("backup extension unavailable (%v): falling back to a crash-consistent snapshot", rootMessage(err))
		workflow.GetLogger(ctx).Warn(note)
		prog.note(note)
		return platform.CrashConsistent
	}
	for _, n := range st.Notes {
		prog.note(n)
	}
	return in.Consistency
}

// plannedSnapshot is the snapshot CreateSnapshot is asked for, before it
// returns a token: its id is the run's, so a retry of the step, and the
// cleanup, find what an attempt made by it.
func plannedSnapshot(ctx workflow.Context, in BackupVMInput) platform.Snapshot {
	return platform.Snapshot{ID: "vmvault-" + workflow.GetInfo(ctx).WorkflowExecution.RunID, VM: in.VM}
}

// takeSnapshot takes the backup's snapshot. With early (the cleanup is
// registered before, deleting the planned snapshot by id if no token comes
// back), the step heartbeats, so a cancel or the job's limit while it runs
// (guest pre-scripts may take minutes) reaches it, and it is waited for, so
// the cleanup runs after it ended: nothing is left behind.
func takeSnapshot(ctx workflow.Context, in BackupVMInput, want platform.Consistency, early bool, prog *Progress) (platform.Snapshot, error) {
	prog.Phase = PhaseSnapshot
	sctx := snapshotOptions(ctx, in.Host)
	if early {
		sctx = heartbeating(sctx)
	}
	var snap platform.Snapshot
	req := activities.SnapshotInput{VM: in.VM, ID: plannedSnapshot(ctx, in).ID, Consistency: want}
	if err := workflow.ExecuteActivity(sctx, hostAct.CreateSnapshot, req).Get(ctx, &snap); err != nil {
		return snap, err
	}
	prog.Consistency = snap.Consistency
	prog.Notes = append(prog.Notes, snap.Notes...)
	return snap, nil
}

// transferDisks moves every disk's changed blocks into the vault, all disks
// in parallel; the first failure cancels the rest.
func transferDisks(ctx workflow.Context, in BackupVMInput, snap platform.Snapshot, prep activities.PrepareBackupResult, names []string, prog *Progress) ([]activities.TransferDiskResult, error) {
	prog.Phase = PhaseTransfer
	xferCtx := diskOptions(ctx, in.Host, in.HeartbeatTimeout, 20)
	results := make([]activities.TransferDiskResult, len(names))
	err := eachDisk(xferCtx, names, func(ctx workflow.Context, name string) workflow.Future {
		ti := activities.TransferDiskInput{Vault: prep.Vault, VM: in.VM, Snapshot: snap, Disk: name}
		if root, ok := prep.ParentRoots[name]; ok {
			ti.Parent = &root
			ti.ParentSnapshotToken = prep.ParentTokens[name]
			ti.ParentRef = prep.Parent
		}
		prog.disk(name).State = DiskRunning
		return workflow.ExecuteActivity(withSummary(ctx, "disk "+name), hostAct.TransferDisk, ti)
	}, func(i int, f workflow.Future) error {
		ds := prog.disk(names[i])
		if err := f.Get(ctx, &results[i]); err != nil {
			ds.State = DiskFailed
			return err
		}
		r := results[i].Result
		ds.State = DiskDone
		ds.DoneBytes, ds.SizeBytes = r.Size, r.Size
		ds.ScannedBytes, ds.ChangedBytes = r.Stats.ScannedBytes, r.Stats.ChangedBytes
		ds.UploadedBytes, ds.StoredBytes = r.Stats.NewBytes, r.Stats.StoredBytes
		prog.Notes = append(prog.Notes, results[i].Notes...)
		return nil
	})
	return results, err
}

// commitBackup writes the recovery point: the backup's commit.
func commitBackup(ctx workflow.Context, in BackupVMInput, vm platform.VM, snap platform.Snapshot, prep activities.PrepareBackupResult,
	results []activities.TransferDiskResult, prog *Progress, res BackupVMResult, keep bool) (BackupVMResult, error) {
	prog.Phase = PhaseCommit
	var suffix string
	if err := workflow.SideEffect(ctx, func(workflow.Context) any { return uuid.NewString()[:6] }).Get(&suffix); err != nil {
		return res, err
	}
	info := workflow.GetInfo(ctx)
	started := prog.StartedAt.UTC()
	rp := vault.RecoveryPoint{
		ID: started.Format("20060102T150405Z") + "-" + suffix, VM: in.VM, Host: in.Host,
		Type: res.Type, Consistency: snap.Consistency.String(), Parent: prep.Parent,
		StartedAt: started, CompletedAt: workflow.Now(ctx).UTC(),
		Job:           info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID,
		SnapshotToken: snap.Token,
	}
	rp.Kept = keepSnapshot(ctx, in, keep, snap, rp.ID, prog)
	prog.Phase = PhaseCommit
	for _, r := range results {
		d := diskByName(vm, r.Disk)
		rp.Disks = append(rp.Disks, vault.DiskRecord{Name: r.Disk, Role: string(d.Role), LUN: d.LUN, SizeBytes: r.Result.Size,
			Root: r.Result.Root, Method: r.Result.Method, Stats: r.Result.Stats})
	}
	var ref string
	save := activities.SaveRecoveryPointInput{Vault: prep.Vault, RecoveryPoint: rp, VM: vm}
	if err := workflow.ExecuteActivity(vaultStepOptions(ctx), vaultAct.SaveRecoveryPoint, save).Get(ctx, &ref); err != nil {
		return res, err
	}
	res.RecoveryPoint, res.Consistency, res.Disks, res.Totals = ref, snap.Consistency, rp.Disks, rp.Totals()
	res.Notes, res.Kept = prog.Notes, rp.Kept
	prog.RecoveryPoint = ref
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrRecoveryPoint.ValueSet(ref), AttrBackupType.ValueSet(string(res.Type)), AttrConsistency.ValueSet(res.Consistency.String()))
	prog.Phase = PhaseDone
	return res, nil
}

// endBackup runs deferred at the end of every backup: it deletes the
// snapshot, then (overlap) waits for the replication request's answer.
func endBackup(ctx workflow.Context, in BackupVMInput, snap platform.Snapshot, prog *Progress, res *BackupVMResult, err error, replicated func()) error {
	err = deleteSnapshot(ctx, in, snap, prog, res, err)
	if replicated != nil {
		replicated()
		if err == nil {
			res.Notes = prog.Notes
		}
	}
	return err
}

// deleteSnapshot is the backup's cleanup: it runs even when the job failed
// or was cancelled, on a disconnected context, and returns the job's error.
func deleteSnapshot(ctx workflow.Context, in BackupVMInput, snap platform.Snapshot, prog *Progress, res *BackupVMResult, err error) error {
	if in.KeepSnapshot && err == nil {
		return nil
	}
	prog.Phase = PhaseCleanup
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	derr := workflow.ExecuteActivity(hostOptions(dctx, in.Host), hostAct.DeleteSnapshot, snap).Get(dctx, nil)
	switch {
	case derr == nil:
	case err == nil:
		// The recovery point is saved and good: the job succeeds with a
		// warning rather than failing and inviting a second backup.
		workflow.GetLogger(ctx).Error("snapshot not deleted", "snapshot", snap.ID, "error", derr)
		note := fmt.Sprintf("warning: snapshot %s was not deleted (%v): remove it by hand", snap.ID, rootMessage(derr))
		prog.note(note)
		res.Notes = append(res.Notes, note)
	default:
		workflow.GetLogger(ctx).Error("snapshot not deleted", "snapshot", snap.ID, "error", derr)
		err = withCleanupError(err, fmt.Errorf("delete snapshot %s: %w", snap.ID, derr))
	}
	if err == nil && derr == nil {
		commitChanges(dctx, in, snap, prog, res)
	}
	if err == nil {
		prog.Phase = PhaseDone
	}
	return err
}

// commitChanges tells the platform the recovery point made from snap is
// durable (CBT: the changes before it may go). Only after the snapshot is
// deleted (an exported bitmap cannot be dropped), and never for a failed
// backup; a failure only costs a longer next CBT read, so it is a note.
func commitChanges(ctx workflow.Context, in BackupVMInput, snap platform.Snapshot, prog *Progress, res *BackupVMResult) {
	if workflow.GetVersion(ctx, "commit-changes", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	if cerr := workflow.ExecuteActivity(hostOptions(ctx, in.Host), hostAct.CommitChanges, snap).Get(ctx, nil); cerr != nil {
		note := fmt.Sprintf("warning: changed-block tracking not advanced (%v): the next backup reads a little more", rootMessage(cerr))
		prog.note(note)
		res.Notes = append(res.Notes, note)
	}
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

// Limits are the seed's limits, enforced before any data moves.
type Limits struct {
	MaxDataDisks int   `json:"max_data_disks"`
	MaxDiskBytes int64 `json:"max_disk_bytes"`
}

// DefaultLimits: 16 data disks, 4095 GB per disk (the classic limit).
var DefaultLimits = Limits{MaxDataDisks: 16, MaxDiskBytes: 4095 << 30}

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
