// Package platform is where VMs live: it describes VMs, takes and removes
// snapshots, reads disks out of a snapshot and writes disks back on restore.
// Implementations: images (a folder per VM with vm.json and disk image files)
// and qemu (running QEMU/KVM VMs over QMP and the guest agent: fleecing
// snapshots, NBD reads, persistent dirty bitmaps for CBT).
//
// Restores are staged, then committed or aborted. A restore (one
// RestoreStage: its job id, the same on every retry) writes each disk with
// StageDisk into a staging file beside the disk's image, never into the
// image; a retry reopens what the earlier attempt staged. CommitRestore, run
// once every disk is staged and verified, puts the staged disks in place
// under the image lock, keeps the replaced images (unless told to discard
// them), and changes the VM definition last; it is idempotent, so a retry
// after a crash finishes it. AbortRestore removes what a failed restore
// staged, rolls back a commit that did not finish, and removes a VM that
// PrepareNewVM reserved and no commit completed. A restore that fails
// therefore leaves every VM as it was.
//
// Platforms never follow a symlink to find a disk: a disk path is resolved
// beneath its VM's folder, and one that would leave it is refused with
// ErrInvalidVM naming the VM, the disk and the path.
package platform

import (
	"context"
	"errors"
	"io"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/imagelock"
)

// Errors every platform returns (wrapped) so that callers can tell bad input
// from transient trouble with errors.Is.
var (
	ErrVMNotFound = errors.New("vm not found")
	ErrVMExists   = errors.New("vm already exists")
	// ErrDiskBusy is imagelock's error, so that image lock failures from
	// any package that takes the locks (diskfile too) test as it.
	ErrDiskBusy     = imagelock.ErrBusy
	ErrDiskChanged  = errors.New("disk changed while it was being read")
	ErrInvalidVM    = errors.New("invalid vm definition")
	ErrVMRunning    = errors.New("vm is running")
	ErrNotSupported = errors.New("not supported by this platform")
	// ErrAgentUnavailable: the VM's guest agent does not answer, so the
	// guest cannot be quiesced (the backup falls back to crash-consistent).
	ErrAgentUnavailable = errors.New("guest agent unavailable")
)

// PowerState is whether a VM runs.
type PowerState string

const (
	PowerRunning PowerState = "running"
	PowerStopped PowerState = "stopped"
)

// OSType is a VM's guest operating system family.
type OSType string

const (
	OSLinux   OSType = "linux"
	OSWindows OSType = "windows"
)

// DiskRole is what a disk is for; it decides backup and restore handling.
type DiskRole string

const (
	DiskOS   DiskRole = "os"
	DiskData DiskRole = "data"
	// DiskTemp is scratch space: never backed up, comes back empty on restore.
	DiskTemp DiskRole = "temp"
)

// Disk describes one virtual disk of a VM.
type Disk struct {
	// Name is unique within the VM and stable across backups (e.g. "os",
	// "data0"); it is how a disk is matched with its previous backup.
	Name string   `json:"name"`
	Role DiskRole `json:"role"`
	// LUN is the data disk's logical unit number (data disks only).
	LUN int `json:"lun,omitempty"`
	// File is the image file relative to the VM folder (images platform).
	File string `json:"file,omitempty"`
	// Format is "raw" (default) or "qcow2".
	Format string `json:"format,omitempty"`
	// SizeBytes is the virtual size of the disk.
	SizeBytes int64 `json:"size_bytes"`
}

// VM is the platform's description of a VM; it is also what a recovery point
// records and what a restore creates.
type VM struct {
	Name     string     `json:"name"`
	OS       OSType     `json:"os"`
	CPUs     int        `json:"cpu"`
	MemoryMB int        `json:"memory_mb"`
	Power    PowerState `json:"power_state"`
	Disks    []Disk     `json:"disks"`
	// Extension is the backup extension's state inside the VM.
	Extension ExtensionStatus `json:"extension,omitempty"`
}

// ExtensionStatus is the state of the backup extension (the in-guest agent
// that quiesces applications and file systems).
type ExtensionStatus struct {
	Installed bool   `json:"installed"`
	Version   string `json:"version,omitempty"`
	// Healthy is false when the extension is installed but not answering.
	Healthy bool `json:"healthy,omitempty"`
	// Notes say what the check did ("backup extension 2 upgraded from 1"),
	// for the job log.
	Notes []string `json:"notes,omitempty"`
}

// SnapshotRequest asks for a point-in-time copy of all disks of a VM.
type SnapshotRequest struct {
	// ID names the snapshot; the caller makes it unique and reuses it on
	// retry, so creating the same snapshot twice is harmless.
	ID string `json:"id"`
	// Consistency is the strongest consistency wanted; the platform falls
	// back to weaker ones and reports what it achieved.
	Consistency Consistency `json:"consistency"`
}

// Snapshot is a point-in-time copy of a VM's disks.
type Snapshot struct {
	ID          string      `json:"id"`
	VM          string      `json:"vm"`
	Consistency Consistency `json:"consistency"`
	// Notes say why a weaker consistency was achieved, for the job log.
	Notes []string `json:"notes,omitempty"`
	// Token is platform-private state needed to read or delete the snapshot
	// (e.g. file fingerprints, bitmap names).
	Token string `json:"token,omitempty"`
}

// DiskReader reads one disk of a snapshot.
type DiskReader interface {
	io.ReaderAt
	io.Closer
	// Size is the virtual size of the disk in bytes.
	Size() int64
	// DataExtents returns the ranges that may hold data, in order; every
	// byte outside them reads as zero (holes of sparse images are not read).
	DataExtents(ctx context.Context) ([]extent.Extent, error)
	// ChangedExtents returns the ranges changed since the snapshot named by
	// sinceToken (changed-block tracking). ok is false when the chain since
	// that snapshot is broken; a platform without CBT returns
	// ErrNotSupported. Either way the caller compares checksums.
	ChangedExtents(ctx context.Context, sinceToken string) (extents []extent.Extent, ok bool, err error)
	// Verify returns ErrDiskChanged if the disk changed since the snapshot
	// was taken (a platform whose snapshots are not copies checks this after
	// reading).
	Verify(ctx context.Context) error
}

// StagedDisk is one disk being restored: a file beside the target that only
// CommitRestore puts in place. Bytes never written read as zero.
type StagedDisk interface {
	io.WriterAt
	// Resumed reports that the staging file was left by an earlier attempt
	// of the same restore and was reopened as it was, not emptied: the
	// caller continues where that attempt's checkpoint says.
	Resumed() bool
	// Sync makes what was written so far durable, so a checkpoint taken
	// after it holds across a crash of the host.
	Sync() error
	// Close syncs the written data to stable storage and closes the file;
	// the staged disk stays staged until CommitRestore or AbortRestore.
	Close() error
}

// RestoreStage names one restore's staged work on a platform: the restore
// job's id, unique per job and the same across its retries, so a retry
// finds what an earlier attempt staged.
type RestoreStage string

// CommitOptions tune CommitRestore.
type CommitOptions struct {
	// DiscardReplaced deletes the replaced disks instead of keeping them.
	DiscardReplaced bool
	// Sizes are the restored disks' sizes by disk name, recorded in the VM
	// definition when the commit succeeds.
	Sizes map[string]int64
}

// CommitResult says what a commit did.
type CommitResult struct {
	VM VM `json:"vm"`
	// Kept maps a replaced disk's name to where its old image was kept.
	Kept map[string]string `json:"kept,omitempty"`
}

// Platform is a place where VMs live.
//
// Restores never make things worse: disks are written to staging files
// beside their targets (StageDisk), and only CommitRestore, when every disk
// of the restore is staged and verified, puts them in place, the VM
// definition last. A restore that fails before its commit changes nothing a
// VM reads; AbortRestore removes what it staged, including a VM prepared by
// PrepareNewVM and never committed.
type Platform interface {
	ListVMs(ctx context.Context) ([]VM, error)
	DescribeVM(ctx context.Context, name string) (VM, error)
	// InstallExtension installs or repairs the backup extension in a
	// running VM and returns its status.
	InstallExtension(ctx context.Context, vm string) (ExtensionStatus, error)
	CreateSnapshot(ctx context.Context, vm string, req SnapshotRequest) (Snapshot, error)
	// DeleteSnapshot removes a snapshot; deleting one that is gone is not an error.
	// A snapshot with only ID and VM (no Token) is one whose CreateSnapshot
	// never returned (cancelled, or its worker died): DeleteSnapshot removes
	// whatever CreateSnapshot with that id may have made, and one that
	// never got made is not an error either.
	DeleteSnapshot(ctx context.Context, snap Snapshot) error
	OpenDisk(ctx context.Context, snap Snapshot, disk string) (DiskReader, error)

	// PrepareNewVM reserves a new, stopped VM for a restore: vm.Disks[i].File
	// is chosen by the platform when empty. The VM does not exist for
	// ListVMs or DescribeVM until CommitRestore. ErrVMExists if the name is
	// taken by anything but this stage; calling it again with the same stage
	// returns the same VM (a retry).
	PrepareNewVM(ctx context.Context, vm VM, stage RestoreStage) (VM, error)
	// StageDisk opens the staging file of one disk of vm (an existing
	// stopped VM, or one prepared by PrepareNewVM) sized size. With the same
	// stage it reopens what an earlier attempt wrote (StagedDisk.Resumed).
	StageDisk(ctx context.Context, vm, disk string, size int64, stage RestoreStage) (StagedDisk, error)
	// CommitRestore puts every staged disk of vm in place, each under the
	// image lock, keeping the replaced images beside them (unless told to
	// discard them), then writes the VM definition. The VM must be stopped.
	// It is idempotent: a retry after a crash finishes the commit.
	CommitRestore(ctx context.Context, vm string, stage RestoreStage, opt CommitOptions) (CommitResult, error)
	// AbortRestore removes the stage's staging files and a VM it prepared
	// that was never committed. Removing nothing is not an error.
	AbortRestore(ctx context.Context, vm string, stage RestoreStage) error
	// Manages reports whether path (absolute) lies where the platform keeps
	// VM disks: a disks-only restore refuses to write there.
	Manages(path string) bool
}

// BitmapCommitter is implemented by platforms whose changed-block tracking
// keeps the changes since a snapshot until told that a recovery point made
// from that snapshot is durable (qemu: frozen dirty bitmaps). Until then a
// later snapshot's ChangedExtents still covers every change since the last
// committed one, so a failed backup loses no change.
//
// The backup calls CommitChanges once per backup, with the snapshot the
// recovery point was made from, after SaveRecoveryPoint succeeded and after
// DeleteSnapshot (an exported bitmap cannot be removed). It is idempotent.
// A failure costs nothing but space and a longer next CBT read; the backup
// should log it, not fail. Never call it for a backup that did not save its
// recovery point.
type BitmapCommitter interface {
	CommitChanges(ctx context.Context, snap Snapshot) error
}
