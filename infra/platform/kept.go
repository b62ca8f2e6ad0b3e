package platform

import (
	"context"
	"errors"
	"time"
)

// Kept snapshots are the instant-restore tier: after a backup a platform
// that can keeps the snapshot's point-in-time image on the host, so that a
// restore to a new VM is made from it in seconds (an overlay on the kept
// image) without reading the vault.
var (
	// ErrKeptGone: the kept snapshot was removed, expired or damaged; the
	// restore reads the vault instead.
	ErrKeptGone = errors.New("kept snapshot is gone")
	// ErrKeptInUse: a VM's disks are overlays on the kept image, so it
	// cannot be removed yet.
	ErrKeptInUse = errors.New("kept snapshot is in use")
)

// KeptSnapshot says where a kept point-in-time image lies. A recovery point
// records it (vault.KeptSnapshot has the same fields); a payload's paths
// are never trusted: the platform finds the files from VM, ID and disks.
type KeptSnapshot struct {
	// Host is the host that keeps it (filled in by the caller: a platform
	// does not know its host's name).
	Host string `json:"host"`
	VM   string `json:"vm"`
	// ID names it on the host; the recovery point's id.
	ID string `json:"id"`
	// Paths are the kept images by disk name, for operators.
	Paths map[string]string `json:"paths"`
	// Sizes are the disks' virtual sizes by name.
	Sizes   map[string]int64 `json:"sizes"`
	Created time.Time        `json:"created"`
	Expires time.Time        `json:"expires"`
}

// Keeper is implemented by platforms that can keep a snapshot's
// point-in-time image after the snapshot itself is deleted.
type Keeper interface {
	// Keep copies the point-in-time image of every disk of snap (which
	// must exist) into read-only files on the host, kept until expires.
	// It is idempotent: a retry with the same id finishes or returns the
	// same kept snapshot.
	Keep(ctx context.Context, snap Snapshot, id string, expires time.Time) (KeptSnapshot, error)
	// NewVMFromKept creates the stopped VM vm whose disks are copy-on-write
	// overlays on the kept images, all at once (the VM appears whole or
	// not at all). ErrKeptGone if the kept snapshot is not there intact;
	// ErrVMExists if the name is taken by anything but this stage's
	// earlier attempt (a retry returns the same VM).
	NewVMFromKept(ctx context.Context, vm VM, kept KeptSnapshot, stage RestoreStage) (VM, error)
	// ListKept lists the kept snapshots of this host.
	ListKept(ctx context.Context) ([]KeptSnapshot, error)
	// RemoveKept removes a kept snapshot; one that is gone is not an
	// error. ErrKeptInUse while a VM's disks are overlays on it.
	RemoveKept(ctx context.Context, kept KeptSnapshot) error
}
