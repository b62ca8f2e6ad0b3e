package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// Signaler delivers progress to a running workflow (client.Client is one).
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// SignalDiskProgress is the signal a disk transfer sends its workflow.
const SignalDiskProgress = "disk-progress"

// HostQueue is the task queue of a hypervisor host: its Host activities.
func HostQueue(host string) string { return "vmvault-host-" + host }

// Host holds the activities that run on a hypervisor host.
type Host struct {
	Name     string
	Platform platform.Platform
	Vault    *vault.Vault
	// Signaler, when set, sends disk progress to the workflow now and then.
	Signaler Signaler
	// ProgressEvery is the shortest time between progress signals (default 2s);
	// it grows with the transfer's age so long jobs keep a short history.
	ProgressEvery time.Duration
	// TransferWorkers bounds the cores one disk transfer uses (0: all).
	TransferWorkers int
	// ReadLimit caps each disk transfer's read rate, bytes/s (0: no cap).
	ReadLimit int64
}

type VMInput struct {
	VM string `json:"vm"`
}

// VMList is a host's VMs, and the VM definitions it could not read: one bad
// folder must not hide the rest.
type VMList struct {
	VMs      []platform.VM `json:"vms"`
	Problems []string      `json:"problems,omitempty"`
}

// ListVMs lists the VMs of this host.
func (h *Host) ListVMs(ctx context.Context) (VMList, error) {
	vms, err := h.Platform.ListVMs(ctx)
	if err != nil && !(errors.Is(err, platform.ErrInvalidVM) && vms != nil) {
		return VMList{}, classify(err)
	}
	out := VMList{VMs: vms}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			out.Problems = append(out.Problems, line)
		}
	}
	return out, nil
}

// DescribeVM returns a VM's metadata, power state and disks.
func (h *Host) DescribeVM(ctx context.Context, in VMInput) (platform.VM, error) {
	vm, err := h.Platform.DescribeVM(ctx, in.VM)
	return vm, classify(err)
}

// EnsureExtension installs the backup extension in a running VM, or checks it.
func (h *Host) EnsureExtension(ctx context.Context, in VMInput) (platform.ExtensionStatus, error) {
	vm, err := h.Platform.DescribeVM(ctx, in.VM)
	if err != nil {
		return platform.ExtensionStatus{}, classify(err)
	}
	if vm.Extension.Installed && vm.Extension.Healthy {
		return vm.Extension, nil
	}
	activity.GetLogger(ctx).Info("installing backup extension", "vm", in.VM)
	st, err := h.Platform.InstallExtension(ctx, in.VM)
	return st, classify(err)
}

type SnapshotInput struct {
	VM          string               `json:"vm"`
	ID          string               `json:"id"`
	Consistency platform.Consistency `json:"consistency"`
}

// CreateSnapshot takes a snapshot; retried with the same id it is harmless.
func (h *Host) CreateSnapshot(ctx context.Context, in SnapshotInput) (platform.Snapshot, error) {
	s, err := h.Platform.CreateSnapshot(ctx, in.VM, platform.SnapshotRequest{ID: in.ID, Consistency: in.Consistency})
	return s, classify(err)
}

// DeleteSnapshot removes a snapshot; a missing one is fine.
func (h *Host) DeleteSnapshot(ctx context.Context, snap platform.Snapshot) error {
	return classify(h.Platform.DeleteSnapshot(ctx, snap))
}

// DiskProgress is what a disk transfer reports: in heartbeats, in signals to
// the workflow, and so in the workflow's progress query.
type DiskProgress struct {
	Disk          string  `json:"disk"`
	SizeBytes     int64   `json:"size_bytes"`
	DoneBytes     int64   `json:"done_bytes"`
	ScannedBytes  int64   `json:"scanned_bytes"`
	ChangedBytes  int64   `json:"changed_bytes"`
	UploadedBytes int64   `json:"uploaded_bytes"`
	StoredBytes   int64   `json:"stored_bytes"`
	BytesPerS     float64 `json:"bytes_per_s"`
	Attempt       int32   `json:"attempt"`
}

func diskProgress(p vault.DiskProgress, attempt int32) DiskProgress {
	return DiskProgress{Disk: p.Disk, SizeBytes: p.SizeBytes, DoneBytes: p.DoneBytes,
		ScannedBytes: p.Stats.ScannedBytes, ChangedBytes: p.Stats.ChangedBytes,
		UploadedBytes: p.Stats.NewBytes, StoredBytes: p.Stats.StoredBytes, BytesPerS: p.BytesPerS, Attempt: attempt}
}

// transferHeartbeat is a disk transfer's heartbeat: its durable checkpoint
// (to resume from after a crash) and its progress.
type transferHeartbeat struct {
	Checkpoint *vault.Checkpoint `json:"checkpoint,omitempty"`
	Progress   DiskProgress      `json:"progress"`
}

type TransferDiskInput struct {
	VM       string            `json:"vm"`
	Snapshot platform.Snapshot `json:"snapshot"`
	Disk     string            `json:"disk"`
	// Parent is the disk's tree root in the VM's previous recovery point.
	Parent *vault.ID `json:"parent,omitempty"`
	// ParentSnapshotToken names the snapshot the parent was taken from, for
	// changed-block tracking; empty means compare checksums.
	ParentSnapshotToken string `json:"parent_snapshot_token,omitempty"`
}

type TransferDiskResult struct {
	Disk   string           `json:"disk"`
	Result vault.DiskResult `json:"result"`
	Notes  []string         `json:"notes,omitempty"`
}

// TransferDisk moves the changed blocks of one disk of a snapshot into the
// vault. It heartbeats a checkpoint; a retry (after a worker crash) resumes
// from it and uploads nothing that is already durable.
func (h *Host) TransferDisk(ctx context.Context, in TransferDiskInput) (TransferDiskResult, error) {
	res := TransferDiskResult{Disk: in.Disk}
	info := activity.GetInfo(ctx)
	log := activity.GetLogger(ctx)
	var hb transferHeartbeat
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &hb); err != nil {
			log.Warn("ignoring unreadable heartbeat", "error", err)
			hb = transferHeartbeat{}
		}
	}
	// Packs written by other workers (or by an earlier attempt) count as stored.
	if _, err := h.Vault.RefreshIndex(ctx); err != nil {
		return res, classify(err)
	}
	r, err := h.Platform.OpenDisk(ctx, in.Snapshot, in.Disk)
	if err != nil {
		return res, classify(err)
	}
	defer r.Close()
	ext, err := r.DataExtents(ctx)
	if err != nil {
		return res, classify(fmt.Errorf("disk %s: data extents: %w", in.Disk, err))
	}
	opt := vault.BackupOptions{Disk: in.Disk, Extents: extent.Normalize(ext), Parent: in.Parent, Resume: hb.Checkpoint, Workers: h.TransferWorkers, ReadLimit: h.ReadLimit}
	if in.Parent != nil && in.ParentSnapshotToken != "" {
		changed, ok, err := r.ChangedExtents(ctx, in.ParentSnapshotToken)
		switch {
		case err != nil:
			res.Notes = append(res.Notes, fmt.Sprintf("disk %s: changed-block tracking failed (%v): comparing checksums", in.Disk, err))
		case !ok:
			res.Notes = append(res.Notes, fmt.Sprintf("disk %s: changed-block tracking chain broken: comparing checksums", in.Disk))
		default:
			opt.Changed = extent.Normalize(changed)
			if opt.Changed == nil {
				opt.Changed = []extent.Extent{} // CBT says: nothing changed
			}
		}
	}

	last := hb
	rep := h.newReporter(ctx)
	defer rep.keepAlive(last)()
	opt.Progress = func(p vault.DiskProgress) {
		if p.Checkpoint != nil {
			last.Checkpoint = p.Checkpoint
		}
		last.Progress = diskProgress(p, info.Attempt)
		rep.report(last, last.Progress, false)
	}
	if hb.Checkpoint != nil {
		log.Info("resuming disk transfer", "disk", in.Disk, "block", hb.Checkpoint.NextBlock)
	}
	out, err := h.Vault.BackupDisk(ctx, r, opt)
	if err != nil {
		return res, classify(err)
	}
	// A storage snapshot of a stopped VM is only good if nobody wrote meanwhile.
	if err := r.Verify(ctx); err != nil {
		return res, classify(err)
	}
	res.Result = out
	if out.ResumedAt > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("disk %s: attempt %d resumed at offset %d from a checkpoint; data already in the vault was not uploaded again",
			in.Disk, info.Attempt, out.ResumedAt*int64(h.Vault.Config().BlockSize)))
	}
	last.Progress = diskProgress(vault.DiskProgress{Disk: in.Disk, SizeBytes: out.Size, DoneBytes: out.Size, Stats: out.Stats}, info.Attempt)
	rep.report(last, last.Progress, true)
	return res, nil
}

// reporter heartbeats a long activity's progress on every update (the SDK
// throttles what it sends) and signals it to the workflow now and then, less
// often as the activity ages, so a long job keeps a short history.
type reporter struct {
	ctx        context.Context
	h          *Host
	info       *activity.Info
	mu         sync.Mutex
	details    any
	began      time.Time
	lastSignal time.Time
}

func (h *Host) newReporter(ctx context.Context) *reporter {
	info := activity.GetInfo(ctx)
	return &reporter{ctx: ctx, h: h, info: &info, began: time.Now()}
}

// report records heartbeat details and signals p when due (or when force).
func (r *reporter) report(details any, p DiskProgress, force bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.details = details
	activity.RecordHeartbeat(r.ctx, details)
	if r.h.Signaler == nil || !force && time.Since(r.lastSignal) < r.signalEvery() {
		return
	}
	r.lastSignal = time.Now()
	// Best effort: progress is informative, a lost signal is harmless.
	_ = r.h.Signaler.SignalWorkflow(r.ctx, r.info.WorkflowExecution.ID, r.info.WorkflowExecution.RunID, SignalDiskProgress, p)
}

func (r *reporter) signalEvery() time.Duration {
	every := r.h.ProgressEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	return max(every, time.Since(r.began)/30)
}

// keepAlive heartbeats the last details (initially initial) every few
// seconds, so a live activity waiting on slow storage is not retried, and a
// resumed one keeps its checkpoint; call the result to stop.
func (r *reporter) keepAlive(initial any) (stop func()) {
	r.mu.Lock()
	r.details = initial
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.mu.Lock()
				activity.RecordHeartbeat(r.ctx, r.details)
				r.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

type CreateVMInput struct {
	VM platform.VM `json:"vm"`
}

// CreateVM creates a stopped VM with empty disks, for a restore.
func (h *Host) CreateVM(ctx context.Context, in CreateVMInput) (platform.VM, error) {
	vm, err := h.Platform.CreateVM(ctx, in.VM)
	return vm, classify(err)
}

type RestoreDiskInput struct {
	RecoveryPoint string           `json:"recovery_point"`
	Disk          vault.DiskRecord `json:"disk"`
	// Exactly one target: a disk of a VM on this host, or a directory.
	TargetVM  string `json:"target_vm,omitempty"`
	TargetDir string `json:"target_dir,omitempty"`
	// FileName is the image file name in TargetDir.
	FileName string `json:"file_name,omitempty"`
}

type RestoreDiskResult struct {
	Disk   string              `json:"disk"`
	Path   string              `json:"path,omitempty"`
	Result vault.RestoreResult `json:"result"`
}

// RestoreDisk writes one disk of a recovery point to a VM disk or a file,
// verifying every block. A temp disk is recreated empty.
func (h *Host) RestoreDisk(ctx context.Context, in RestoreDiskInput) (RestoreDiskResult, error) {
	res := RestoreDiskResult{Disk: in.Disk.Name}
	var w platform.DiskWriter
	var err error
	switch {
	case in.TargetVM != "" && in.TargetDir == "":
		w, err = h.Platform.OpenDiskWriter(ctx, in.TargetVM, in.Disk.Name, in.Disk.SizeBytes)
	case in.TargetDir != "" && in.TargetVM == "":
		if err := os.MkdirAll(in.TargetDir, 0o755); err != nil {
			return res, fmt.Errorf("restore disk %s: %w", in.Disk.Name, err)
		}
		name := in.FileName
		if name == "" {
			name = in.Disk.Name + ".raw"
		}
		res.Path = filepath.Join(in.TargetDir, filepath.Base(name))
		w, err = diskfile.Create(res.Path, in.Disk.SizeBytes)
	default:
		return res, badRequest("restore disk: want exactly one of target vm and target directory")
	}
	if err != nil {
		return res, classify(fmt.Errorf("restore disk %s: %w", in.Disk.Name, err))
	}
	if in.Disk.Role == string(platform.DiskTemp) {
		return res, classify(w.Close())
	}
	if _, err := h.Vault.RefreshIndex(ctx); err != nil {
		w.Close()
		return res, classify(err)
	}
	attempt := activity.GetInfo(ctx).Attempt
	rep := h.newReporter(ctx)
	defer rep.keepAlive(DiskProgress{Disk: in.Disk.Name, SizeBytes: in.Disk.SizeBytes, Attempt: attempt})()
	out, err := h.Vault.RestoreDisk(ctx, in.Disk.Root, w, vault.RestoreOptions{Disk: in.Disk.Name, Progress: func(p vault.DiskProgress) {
		dp := diskProgress(p, attempt)
		rep.report(dp, dp, false)
	}})
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("restore disk %s: %w", in.Disk.Name, cerr)
	}
	if err != nil {
		return res, classify(fmt.Errorf("recovery point %s: %w", in.RecoveryPoint, err))
	}
	res.Result = out
	return res, nil
}
