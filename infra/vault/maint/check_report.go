package maint

import (
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// CheckOptions tune Check.
type CheckOptions struct {
	// ReadData re-reads, decrypts and re-hashes every block the recovery
	// points reference (tree nodes are always read).
	ReadData bool
	// ReadDataPercent, from 1 to 99, reads only the blocks in that share of
	// the packs, chosen by pack id and Seed: the same Seed picks the same
	// packs, and Seed+1 the next share, so checks with Seed 0, 1, 2, ...
	// read every pack within ceil(100/ReadDataPercent) checks.
	ReadDataPercent int
	Seed            uint64
	// MaxDamage caps the damage items listed (0: 1000); the damaged recovery
	// points are always all listed.
	MaxDamage int
	// Progress is called after each recovery point.
	Progress func(CheckProgress)
	// ReadOnly keeps Check from writing anything, even the quarantine of
	// a pack it finds damaged.
	ReadOnly bool
}

// CheckProgress is reported while Check runs.
type CheckProgress struct {
	RecoveryPoint string `json:"recovery_point"` // last checked, "<vm>/<id>"
	Done          int    `json:"done"`
	Total         int    `json:"total"`
	BytesRead     int64  `json:"bytes_read"`
}

// DamageKind says what part of a recovery point is damaged.
type DamageKind string

const (
	DamageRoot  DamageKind = "root"  // a disk's tree root
	DamageLeaf  DamageKind = "leaf"  // a tree leaf: the blocks it lists are lost
	DamageBlock DamageKind = "block" // one block of a disk
)

// Damage is one unrestorable piece of a recovery point.
type Damage struct {
	Kind          DamageKind `json:"kind"`
	VM            string     `json:"vm"`
	RecoveryPoint string     `json:"recovery_point"`
	Disk          string     `json:"disk"`
	// Offset is the byte offset on the disk where the damage starts.
	Offset int64     `json:"offset"`
	Blob   format.ID `json:"blob"`
	// Pack is where the blob is (or was) stored, if known.
	Pack   *format.ID `json:"pack,omitempty"`
	Reason string     `json:"reason"`
}

// CheckReport is what Check found. OK is true when nothing is damaged.
type CheckReport struct {
	// Vault is the checked vault's location (set by the caller).
	Vault          string `json:"vault,omitempty"`
	OK             bool   `json:"ok"`
	RecoveryPoints int    `json:"recovery_points"`
	Disks          int    `json:"disks"`
	Leaves         int    `json:"leaves"` // distinct leaves checked
	Blocks         int64  `json:"blocks"` // non-zero block references checked
	BlobsRead      int64  `json:"blobs_read"`
	BytesRead      int64  `json:"bytes_read"`
	Packs          int    `json:"packs"`
	// IndexProblems are index objects left out of the index (see RefreshIndex).
	IndexProblems []format.IndexProblem `json:"index_problems,omitempty"`
	// UnindexedPacks have no readable index object: leftovers of interrupted
	// backups, or packs whose index was lost (Repair re-indexes them).
	UnindexedPacks   []format.ID            `json:"unindexed_packs,omitempty"`
	CorruptManifests []repo.ManifestProblem `json:"corrupt_manifests,omitempty"`
	// Damaged are the damaged recovery points, "<vm>/<id>", sorted.
	Damaged       []string `json:"damaged,omitempty"`
	Damage        []Damage `json:"damage,omitempty"`
	DamageOmitted int      `json:"damage_omitted,omitempty"`
	// Quarantined are the packs this check found damaged and put in
	// quarantine (unless ReadOnly): out of dedup, their sound blobs copied.
	Quarantined []QuarantineReport `json:"quarantined,omitempty"`
	// QuarantinedPacks is how many packs are in quarantine now.
	QuarantinedPacks int `json:"quarantined_packs,omitempty"`
}
