package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// RestoreTarget is where a restore writes: the disks of a VM of this host
// (a new one prepared for the restore, or one whose disks are replaced), or
// image files in a directory.
type RestoreTarget struct {
	VM  string `json:"vm,omitempty"`
	Dir string `json:"dir,omitempty"`
	// Force lets a disks-only restore replace existing files in Dir.
	Force bool `json:"force,omitempty"`
}

func (t RestoreTarget) check() error {
	if (t.VM == "") == (t.Dir == "") {
		return badRequest("restore: want exactly one of a target vm and a target directory")
	}
	if t.Dir != "" && !filepath.IsAbs(t.Dir) {
		return badRequest(fmt.Sprintf("restore: target directory %q is not absolute", t.Dir))
	}
	return nil
}

// DiskFileName is the image file a disks-only restore writes for a disk.
func DiskFileName(disk string) string { return disk + ".raw" }

// PrepareNewVMInput asks to reserve a new VM for a restore.
type PrepareNewVMInput struct {
	VM    platform.VM           `json:"vm"`
	Stage platform.RestoreStage `json:"stage"`
}

// PrepareNewVM reserves a new, stopped VM that only CommitRestore makes
// visible; a retry with the same stage returns the same VM.
func (h *HostActivities) PrepareNewVM(ctx context.Context, in PrepareNewVMInput) (platform.VM, error) {
	defer alive(ctx)()
	vm, err := h.Platform.PrepareNewVM(ctx, in.VM, in.Stage)
	return vm, classify(err)
}

// CheckRestoreTargetInput is a disks-only restore's target and its files.
type CheckRestoreTargetInput struct {
	Target RestoreTarget `json:"target"`
	Disks  []string      `json:"disks"`
}

// CheckRestoreTarget refuses, before any data moves, a disks-only restore
// into a folder where the platform keeps VM disks, or over existing files
// (unless forced).
func (h *HostActivities) CheckRestoreTarget(ctx context.Context, in CheckRestoreTargetInput) error {
	defer alive(ctx)()
	if err := in.Target.check(); err != nil {
		return err
	}
	if in.Target.Dir == "" {
		return nil
	}
	if h.Platform.Manages(in.Target.Dir) {
		return badRequest(fmt.Sprintf("restore disks: %s is where the platform keeps VM disks; restore into another directory, or use --replace or --new-vm", in.Target.Dir))
	}
	if in.Target.Force {
		return nil
	}
	for _, d := range in.Disks {
		p := filepath.Join(in.Target.Dir, DiskFileName(d))
		if _, err := os.Lstat(p); err == nil {
			return targetExists(p)
		}
	}
	return nil
}

func targetExists(path string) error {
	return nonRetryable(fmt.Sprintf("restore disks: %s exists; remove it or pass --force to replace it", path), ErrTypeTargetExists)
}

// RestoreDiskInput asks to restore one disk of a recovery point. The host
// reads the disk's tree root and size from the sealed manifest itself.
type RestoreDiskInput struct {
	Vault         VaultPin              `json:"vault"`
	RecoveryPoint string                `json:"recovery_point"`
	Disk          string                `json:"disk"`
	Target        RestoreTarget         `json:"target"`
	Stage         platform.RestoreStage `json:"stage"`
}

// RestoreDiskResult says what one disk restore wrote.
type RestoreDiskResult struct {
	Disk      string              `json:"disk"`
	SizeBytes int64               `json:"size_bytes"`
	Result    vault.RestoreResult `json:"result"`
	// ResumedAt is the byte offset a retried restore continued from.
	ResumedAt int64 `json:"resumed_at,omitempty"`
}

// restoreHeartbeat is a disk restore's checkpoint: every leaf before
// NextLeaf is written and synced to the staging file.
type restoreHeartbeat struct {
	NextLeaf int          `json:"next_leaf"`
	Progress DiskProgress `json:"progress"`
}

// stagedWriter is what a disk restore writes into: a platform's staged disk
// or a staged file in a directory.
type stagedWriter interface {
	io.WriterAt
	Resumed() bool
	Sync() error
	Close() error
}

// RestoreDisk writes one disk of a recovery point into its staging file,
// verifying every block; a retry resumes from the last synced checkpoint. A
// temp disk (never backed up) is staged empty. Nothing is in place until
// CommitRestore.
func (h *HostActivities) RestoreDisk(ctx context.Context, in RestoreDiskInput) (RestoreDiskResult, error) {
	res := RestoreDiskResult{Disk: in.Disk}
	if err := in.Target.check(); err != nil {
		return res, err
	}
	v, err := pinned(ctx, h.Vault, h.Secondary, in.Vault) // the primary, or its secondary
	if err != nil {
		return res, err
	}
	rp, vm, err := loadRecoveryPoint(ctx, v, in.RecoveryPoint)
	if err != nil {
		return res, err
	}
	rec, temp, err := diskOf(rp, vm, in.Disk)
	if err != nil {
		return res, err
	}
	res.SizeBytes = rec.SizeBytes
	w, err := h.stage(ctx, in, rec.SizeBytes)
	if err != nil {
		return res, classify(fmt.Errorf("restore disk %s: %w", in.Disk, err))
	}
	if temp {
		return res, classify(w.Close())
	}
	var hb restoreHeartbeat
	if w.Resumed() && activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &hb); err != nil {
			hb = restoreHeartbeat{}
		}
	}
	if _, err := v.RefreshIndex(ctx); err != nil {
		w.Close()
		return res, classify(err)
	}
	out, err := h.restoreInto(ctx, v, in.Disk, rec, w, hb.NextLeaf)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("restore disk %s: %w", in.Disk, cerr)
	}
	if err != nil {
		return res, classify(fmt.Errorf("recovery point %s: %w", rp.Ref(), err))
	}
	res.Result, res.ResumedAt = out, out.ResumedAt
	faultpoint.Hit("restore.written")
	return res, nil
}

// restoreInto restores rec into w from leaf start, syncing w and
// heartbeating a checkpoint every few seconds.
func (h *HostActivities) restoreInto(ctx context.Context, v *vault.Vault, disk string, rec vault.DiskRecord, w stagedWriter, start int) (vault.RestoreResult, error) {
	attempt := activity.GetInfo(ctx).Attempt
	rep := h.newReporter(ctx)
	hb := restoreHeartbeat{NextLeaf: start, Progress: DiskProgress{Disk: disk, SizeBytes: rec.SizeBytes, Attempt: attempt}}
	defer rep.keepAlive(hb)()
	lastSync := time.Now()
	return v.RestoreDisk(ctx, rec.Root, w, vault.RestoreOptions{Disk: disk, StartLeaf: start, Progress: func(p vault.Progress) {
		dp := diskProgress(p, attempt)
		if time.Since(lastSync) > 5*time.Second {
			// Only synced leaves may be named by a checkpoint: a host crash
			// would otherwise leave holes a resumed restore never fills.
			if err := w.Sync(); err == nil {
				hb.NextLeaf, lastSync = p.NextLeaf, time.Now()
			}
		}
		hb.Progress = dp
		rep.report(hb, dp, false)
	}})
}

// stage opens the staging file of one disk on the target.
func (h *HostActivities) stage(ctx context.Context, in RestoreDiskInput, size int64) (stagedWriter, error) {
	if in.Target.VM != "" {
		return h.Platform.StageDisk(ctx, in.Target.VM, in.Disk, size, in.Stage)
	}
	if h.Platform.Manages(in.Target.Dir) {
		return nil, badRequest(fmt.Sprintf("restore disks: %s is where the platform keeps VM disks", in.Target.Dir))
	}
	if err := os.MkdirAll(in.Target.Dir, 0o755); err != nil {
		return nil, err
	}
	return diskfile.Stage(in.Target.Dir, DiskFileName(in.Disk), size, string(in.Stage))
}

// diskOf finds a disk in a recovery point, or the temp disk of its VM.
func diskOf(rp vault.RecoveryPoint, vm platform.VM, name string) (rec vault.DiskRecord, temp bool, err error) {
	for _, d := range rp.Disks {
		if d.Name == name {
			return d, false, nil
		}
	}
	for _, d := range vm.Disks {
		if d.Name == name && d.Role == platform.DiskTemp {
			return vault.DiskRecord{Name: d.Name, Role: string(d.Role), SizeBytes: d.SizeBytes}, true, nil
		}
	}
	return rec, false, badRequest(fmt.Sprintf("recovery point %s has no disk %s", rp.Ref(), name))
}

// CommitRestoreInput puts a restore's staged disks in place.
type CommitRestoreInput struct {
	Target RestoreTarget         `json:"target"`
	Stage  platform.RestoreStage `json:"stage"`
	// Sizes of the restored disks by name.
	Sizes map[string]int64 `json:"sizes"`
	// DiscardReplaced deletes replaced disks instead of keeping them.
	DiscardReplaced bool `json:"discard_replaced,omitempty"`
}

// CommitRestoreResult says where the restored disks are, and where the
// replaced ones were kept.
type CommitRestoreResult struct {
	VM    platform.VM       `json:"vm,omitempty"`
	Paths map[string]string `json:"paths,omitempty"`
	Kept  map[string]string `json:"kept,omitempty"`
}

// CommitRestore puts every staged disk in place, only once all of them are
// staged and verified; a retry after a crash finishes the commit.
func (h *HostActivities) CommitRestore(ctx context.Context, in CommitRestoreInput) (CommitRestoreResult, error) {
	defer alive(ctx)()
	if err := in.Target.check(); err != nil {
		return CommitRestoreResult{}, err
	}
	if in.Target.VM != "" {
		r, err := h.Platform.CommitRestore(ctx, in.Target.VM, in.Stage, platform.CommitOptions{DiscardReplaced: in.DiscardReplaced, Sizes: in.Sizes})
		if err == nil {
			faultpoint.Hit("restore.committed")
		}
		return CommitRestoreResult{VM: r.VM, Kept: r.Kept}, classify(err)
	}
	out := CommitRestoreResult{Paths: map[string]string{}}
	disks := slices.Sorted(maps.Keys(in.Sizes))
	files := make([]string, len(disks))
	for i, d := range disks {
		files[i] = DiskFileName(d)
	}
	// All or, retried after a crash, the rest (the journal says which).
	paths, err := diskfile.CommitAll(in.Target.Dir, files, string(in.Stage), in.Target.Force)
	for i, p := range paths {
		out.Paths[disks[i]] = p
	}
	if errors.Is(err, diskfile.ErrExists) {
		return out, targetExists(filepath.Join(in.Target.Dir, files[len(paths)]))
	}
	if err != nil {
		return out, classify(fmt.Errorf("restore disk %s: %w", disks[len(paths)], err))
	}
	faultpoint.Hit("restore.committed")
	return out, nil
}

// AbortRestoreInput names a failed restore's staged work.
type AbortRestoreInput struct {
	Target RestoreTarget         `json:"target"`
	Stage  platform.RestoreStage `json:"stage"`
}

// AbortRestore removes what a failed restore staged (and a new VM it
// prepared); the targets stay as they were.
func (h *HostActivities) AbortRestore(ctx context.Context, in AbortRestoreInput) error {
	defer alive(ctx)()
	if err := in.Target.check(); err != nil {
		return err
	}
	if in.Target.VM != "" {
		return classify(h.Platform.AbortRestore(ctx, in.Target.VM, in.Stage))
	}
	return classify(diskfile.Abort(in.Target.Dir, string(in.Stage)))
}
