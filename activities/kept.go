package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/platform"
)

// ErrTypeKeptGone: a recovery point's kept snapshot cannot be used (gone,
// expired, damaged, or the platform keeps none); the restore reads the
// vault instead.
const ErrTypeKeptGone = "KeptGone"

// KeepSnapshotInput asks the host to keep a snapshot's point-in-time image
// (the instant-restore tier) under the recovery point's id until Expires.
type KeepSnapshotInput struct {
	Snapshot platform.Snapshot `json:"snapshot"`
	ID       string            `json:"id"`
	Expires  time.Time         `json:"expires"`
}

// KeepSnapshot copies the snapshot's image into files the host keeps; the
// snapshot itself is deleted afterwards as usual. A platform that cannot
// keep snapshots fails with NotSupported.
func (h *HostActivities) KeepSnapshot(ctx context.Context, in KeepSnapshotInput) (platform.KeptSnapshot, error) {
	k, ok := h.Platform.(platform.Keeper)
	if !ok {
		return platform.KeptSnapshot{}, nonRetryable("this platform cannot keep snapshots (only the qemu platform can)", ErrTypeNotSupported)
	}
	defer heartbeatWhile(ctx)()
	kept, err := k.Keep(ctx, in.Snapshot, in.ID, in.Expires)
	return kept, classify(err)
}

// heartbeatWhile heartbeats every second until the returned stop is called.
func heartbeatWhile(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

// ExpireKeptInput is the time kept snapshots are compared with (the
// workflow's clock).
type ExpireKeptInput struct {
	Now time.Time `json:"now"`
}

// ExpireKeptResult names what the cleanup removed, and what it could not.
type ExpireKeptResult struct {
	Removed []string `json:"removed,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// ExpireKept removes the host's kept snapshots that expired before in.Now;
// one that a VM's disks still use is left, with a note. Platforms that
// keep nothing have nothing to do.
func (h *HostActivities) ExpireKept(ctx context.Context, in ExpireKeptInput) (ExpireKeptResult, error) {
	defer alive(ctx)()
	var res ExpireKeptResult
	k, ok := h.Platform.(platform.Keeper)
	if !ok {
		return res, nil
	}
	list, err := k.ListKept(ctx)
	if err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("kept snapshots: %v", err))
	}
	for _, kept := range list {
		if kept.Expires.After(in.Now) {
			continue
		}
		name := kept.VM + "/" + kept.ID
		switch err := k.RemoveKept(ctx, kept); {
		case err == nil:
			res.Removed = append(res.Removed, name)
		case errors.Is(err, platform.ErrKeptInUse):
			res.Notes = append(res.Notes, fmt.Sprintf("kept snapshot %s expired but is kept: %v", name, err))
		default:
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.Notes = append(res.Notes, fmt.Sprintf("kept snapshot %s expired and could not be removed: %v", name, err))
		}
	}
	return res, nil
}

// NewVMFromKeptInput asks for a new VM made from a kept snapshot.
type NewVMFromKeptInput struct {
	VM    platform.VM           `json:"vm"`
	Kept  platform.KeptSnapshot `json:"kept"`
	Stage platform.RestoreStage `json:"stage"`
}

// NewVMFromKept creates the new VM from the kept snapshot in one step (it
// appears whole or not at all); KeptGone when the kept snapshot cannot be
// used, so that the restore reads the vault instead.
func (h *HostActivities) NewVMFromKept(ctx context.Context, in NewVMFromKeptInput) (platform.VM, error) {
	defer alive(ctx)()
	k, ok := h.Platform.(platform.Keeper)
	if !ok {
		return platform.VM{}, nonRetryable("this platform cannot restore from kept snapshots", ErrTypeKeptGone)
	}
	vm, err := k.NewVMFromKept(ctx, in.VM, in.Kept, in.Stage)
	if errors.Is(err, platform.ErrKeptGone) {
		return vm, nonRetryable(err.Error(), ErrTypeKeptGone)
	}
	return vm, classify(err)
}
