package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// transferHeartbeat is a disk transfer's heartbeat: its durable checkpoint
// (to resume from after a crash) and its progress.
type transferHeartbeat struct {
	Checkpoint *vault.Checkpoint `json:"checkpoint,omitempty"`
	Progress   DiskProgress      `json:"progress"`
}

// TransferDiskInput asks to back up one disk of a snapshot.
type TransferDiskInput struct {
	Vault    VaultPin          `json:"vault"`
	VM       string            `json:"vm"`
	Snapshot platform.Snapshot `json:"snapshot"`
	Disk     string            `json:"disk"`
	// Parent is the disk's tree root in the VM's previous recovery point.
	Parent *vault.ID `json:"parent,omitempty"`
	// ParentSnapshotToken names the snapshot the parent was taken from, for
	// changed-block tracking; empty means compare checksums.
	ParentSnapshotToken string `json:"parent_snapshot_token,omitempty"`
	// ParentRef names the parent recovery point, for the job's notes.
	ParentRef string `json:"parent_ref,omitempty"`
}

// TransferDiskResult is one disk's backup: its tree root and stats.
type TransferDiskResult struct {
	Disk   string           `json:"disk"`
	Result vault.DiskResult `json:"result"`
	Notes  []string         `json:"notes,omitempty"`
}

// TransferDisk moves the changed blocks of one disk of a snapshot into the
// vault. It heartbeats a checkpoint; a retry (after a worker crash) resumes
// from it and uploads nothing that is already durable.
func (h *HostActivities) TransferDisk(ctx context.Context, in TransferDiskInput) (TransferDiskResult, error) {
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
	if err := checkPin(h.Vault, in.Vault); err != nil {
		return res, err
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
	opt := vault.BackupOptions{Disk: in.Disk, Extents: extent.Normalize(ext), Parent: in.Parent, Resume: hb.Checkpoint, Workers: h.TransferWorkers, ReadLimit: h.ReadLimit,
		AuditRate: h.CBTAuditRate, AuditSeed: in.ParentRef}
	if in.Parent != nil && in.ParentSnapshotToken != "" {
		changed, ok, err := r.ChangedExtents(ctx, in.ParentSnapshotToken)
		switch {
		case errors.Is(err, platform.ErrNotSupported):
			// No CBT on this platform: checksum comparison is the method.
		case err != nil:
			res.Notes = append(res.Notes, fmt.Sprintf("disk %s: cbt: rebuilt: changed-block tracking failed (%v); compared checksums", in.Disk, err))
		case !ok:
			res.Notes = append(res.Notes, fmt.Sprintf("disk %s: cbt: rebuilt: the changed-block chain since the parent is broken (VM restarted, disk resized or moved); compared checksums", in.Disk))
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
	opt.Progress = func(p vault.Progress) {
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
	if out.Stats.AuditMissed > 0 {
		// PrepareBackup withholds this snapshot's token from the next backup.
		res.Notes = append(res.Notes, fmt.Sprintf("disk %s: cbt: audit found %d blocks the bitmap missed; compared checksums", in.Disk, out.Stats.AuditMissed))
	}
	if out.ParentUnreadable != "" {
		// A damaged parent must not block the VM's backups: this disk was read in full.
		parent := in.ParentRef
		if parent == "" {
			parent = "of tree " + in.Parent.String()
		}
		res.Notes = append(res.Notes, fmt.Sprintf("disk %s: parent %s unreadable (%s): full read", in.Disk, parent, out.ParentUnreadable))
	}
	if out.ResumedAt > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("disk %s: attempt %d resumed at offset %d from a checkpoint; data already in the vault was not uploaded again",
			in.Disk, info.Attempt, out.ResumedAt*int64(h.Vault.Config().BlockSize)))
	}
	last.Progress = diskProgress(vault.Progress{Disk: in.Disk, SizeBytes: out.Size, DoneBytes: out.Size, Stats: out.Stats}, info.Attempt)
	rep.report(last, last.Progress, true)
	faultpoint.Hit("transfer.done")
	return res, nil
}
