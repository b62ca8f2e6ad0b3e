package format

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// BackupType says whether a recovery point had a parent to compare with.
// Either way the recovery point is a synthetic full.
type BackupType string

const (
	BackupFull        BackupType = "full"
	BackupIncremental BackupType = "incremental"
)

// DiskRecord is one disk of a recovery point.
type DiskRecord struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	LUN       int       `json:"lun,omitempty"`
	SizeBytes int64     `json:"size_bytes"`
	Root      ID        `json:"root"`
	Method    Method    `json:"method"`
	Stats     DiskStats `json:"stats"`
}

// RecoveryPoint is an immutable manifest: everything needed to restore a VM
// as it was. Every recovery point is a synthetic full: its trees name every
// block, so a restore never walks a chain of incrementals.
type RecoveryPoint struct {
	ID          string     `json:"id"`
	VM          string     `json:"vm"`
	Host        string     `json:"host"`
	Type        BackupType `json:"type"`
	Consistency string     `json:"consistency"`
	Parent      string     `json:"parent,omitempty"`
	StartedAt   time.Time  `json:"started_at"`
	CompletedAt time.Time  `json:"completed_at"`
	Job         string     `json:"job"`
	// Metadata is the VM's description as the platform gave it (JSON), so a
	// restore can recreate the VM.
	Metadata []byte `json:"metadata"`
	// SnapshotToken is the platform's token of the snapshot the point was
	// made from: the next backup asks the platform for the blocks changed
	// since it (changed-block tracking).
	SnapshotToken string       `json:"snapshot_token,omitempty"`
	Disks         []DiskRecord `json:"disks"`
	// Kept is the point-in-time image the backup kept on its host (backup
	// --keep-snapshot), if any; points written before it existed have none.
	Kept *KeptSnapshot `json:"kept,omitempty"`
}

// Totals sums the disks' stats.
func (rp RecoveryPoint) Totals() DiskStats {
	var s DiskStats
	for _, d := range rp.Disks {
		s.Add(d.Stats)
	}
	return s
}

// Ref is "<vm>/<id>", the name operators use for a recovery point.
func (rp RecoveryPoint) Ref() string { return rp.VM + "/" + rp.ID }

// CheckName refuses a VM or recovery point name that is empty, has a
// slash or is a dot name.
func CheckName(kind, s string) error {
	if s == "" || strings.ContainsAny(s, "/\\") || s == "." || s == ".." {
		return fmt.Errorf("invalid %s name %q", kind, s)
	}
	return nil
}

// DecodeRecoveryPoint decodes the plaintext of the manifest at key: it must
// name the VM and id of its key, and valid disks.
func DecodeRecoveryPoint(key string, data []byte) (RecoveryPoint, error) {
	var rp RecoveryPoint
	if err := json.Unmarshal(data, &rp); err != nil {
		return RecoveryPoint{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if RecoveryPointKey(rp.VM, rp.ID) != key || CheckName("vm", rp.VM) != nil || CheckName("recovery point", rp.ID) != nil {
		return RecoveryPoint{}, fmt.Errorf("%w: manifest names %q/%q", ErrCorrupt, rp.VM, rp.ID)
	}
	for _, d := range rp.Disks {
		if d.SizeBytes < 0 || d.Root.IsZero() {
			return RecoveryPoint{}, fmt.Errorf("%w: disk %q: size %d, root %s", ErrCorrupt, d.Name, d.SizeBytes, d.Root.Short())
		}
	}
	return rp, nil
}

// Method is how a disk backup found the blocks that changed.
type Method string

const (
	// MethodCBT read only the extents the platform reported changed.
	MethodCBT Method = "cbt"
	// MethodChecksum read every allocated block and compared ids.
	MethodChecksum Method = "checksum"
)

// DiskStats count what a disk backup did. Byte counts are logical bytes
// unless named stored.
type DiskStats struct {
	// ScannedBytes were read from the disk.
	ScannedBytes int64 `json:"scanned_bytes"`
	// DataBytes are the non-zero blocks of the disk (what the disk holds).
	DataBytes int64 `json:"data_bytes"`
	// ChangedBytes differ from the parent recovery point (all data if none).
	ChangedBytes int64 `json:"changed_bytes"`
	// NewBytes were not in the vault yet and were uploaded.
	NewBytes int64 `json:"new_bytes"`
	// StoredBytes is what the new blobs take in the vault (compressed, sealed).
	StoredBytes int64 `json:"stored_bytes"`
	NewBlocks   int64 `json:"new_blocks"`
	ZeroBlocks  int64 `json:"zero_blocks"`
	Packs       int   `json:"packs"`
	// AuditedBlocks were read outside a CBT backup's changed extents and
	// compared with the parent (the CBT audit). AuditMissed of them differed:
	// the platform's tracking missed changes, so the disk was read in full
	// instead, and the next backup does not trust the tracking since this
	// point either.
	AuditedBlocks int64 `json:"audited_blocks,omitempty"`
	AuditMissed   int64 `json:"audit_missed,omitempty"`
}

// Add adds o's counts to s, e.g. to total the disks of a recovery point.
func (s *DiskStats) Add(o DiskStats) {
	s.ScannedBytes += o.ScannedBytes
	s.DataBytes += o.DataBytes
	s.ChangedBytes += o.ChangedBytes
	s.NewBytes += o.NewBytes
	s.StoredBytes += o.StoredBytes
	s.NewBlocks += o.NewBlocks
	s.ZeroBlocks += o.ZeroBlocks
	s.Packs += o.Packs
	s.AuditedBlocks += o.AuditedBlocks
	s.AuditMissed += o.AuditMissed
}

// ErrSoftDeleted is returned (wrapped, and also matching ErrNoRecoveryPoint)
// when a recovery point was soft-deleted.
var ErrSoftDeleted = errors.New("recovery point was deleted")

// DeletedPoint is a soft-deleted recovery point.
type DeletedPoint struct {
	RecoveryPoint
	DeletedAt time.Time `json:"deleted_at"`
	// PurgeAfter is when the soft-delete period ends: undelete works until
	// then, and the next purge after it removes the point for good.
	PurgeAfter time.Time `json:"purge_after"`
}

// Tombstone is the sealed object at deleted/<vm>/<id>. GC reads the manifest
// under "recovery_point" (gcManifest).
type Tombstone struct {
	RecoveryPoint RecoveryPoint `json:"recovery_point"`
	DeletedAt     time.Time     `json:"deleted_at"`
	PurgeAfter    time.Time     `json:"purge_after"`
}

// Claim is the sealed object at claims/<vm>/<id>: an undelete or a purge
// of the soft-deleted point is under way (repo.ClaimPoint).
type Claim struct {
	Op    ClaimOp   `json:"op"`
	Nonce string    `json:"nonce"`
	At    time.Time `json:"at"`
}

// ClaimOp is what a claim is for.
type ClaimOp string

// The claims.
const (
	ClaimUndelete ClaimOp = "undelete"
	ClaimPurge    ClaimOp = "purge"
)

// DeletedError says a recovery point was deleted and how to get it back.
type DeletedError struct{ Point DeletedPoint }

func (e DeletedError) Error() string {
	return fmt.Sprintf("recovery point %s was deleted at %s; vmvault rp undelete %s restores it until %s",
		e.Point.Ref(), e.Point.DeletedAt.UTC().Format(time.RFC3339), e.Point.Ref(), e.Point.PurgeAfter.UTC().Format(time.RFC3339))
}

func (e DeletedError) Is(target error) bool {
	return target == ErrSoftDeleted || target == ErrNoRecoveryPoint
}

// Point is the soft-deleted point the tombstone holds.
func (ts Tombstone) Point() DeletedPoint {
	return DeletedPoint{RecoveryPoint: ts.RecoveryPoint, DeletedAt: ts.DeletedAt, PurgeAfter: ts.PurgeAfter}
}
