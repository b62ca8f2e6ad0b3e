package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/activities"
)

// Search attributes that make jobs findable in the Temporal UI. The dev
// server and a real cluster must have them registered (make up does).
var (
	AttrVM            = temporal.NewSearchAttributeKeyKeyword("VmvaultVM")
	AttrVault         = temporal.NewSearchAttributeKeyKeyword("VmvaultVault")
	AttrKind          = temporal.NewSearchAttributeKeyKeyword("VmvaultKind")
	AttrBackupType    = temporal.NewSearchAttributeKeyKeyword("VmvaultBackupType")
	AttrConsistency   = temporal.NewSearchAttributeKeyKeyword("VmvaultConsistency")
	AttrRecoveryPoint = temporal.NewSearchAttributeKeyKeyword("VmvaultRecoveryPoint")
)

// SearchAttributeNames lists the search attributes (all Keyword).
var SearchAttributeNames = []string{"VmvaultVM", "VmvaultVault", "VmvaultKind", "VmvaultBackupType", "VmvaultConsistency", "VmvaultRecoveryPoint"}

const (
	KindBackup  = "backup"
	KindRestore = "restore"

	// QueryProgress is the typed query every job answers with Progress.
	QueryProgress = "progress"
)

// Phases of a job, in order.
const (
	PhaseValidating   = "validating"
	PhaseExtension    = "extension"
	PhaseSnapshot     = "snapshot"
	PhaseTransfer     = "transfer"
	PhaseCommit       = "recovery-point"
	PhaseCleanup      = "cleanup"
	PhaseCreateVM     = "create-vm"
	PhaseRestoreDisks = "restore-disks"
	PhaseDone         = "done"
	PhaseFailed       = "failed"
)

// Limits are the seed's limits, enforced before any data moves.
type Limits struct {
	MaxDataDisks int   `json:"max_data_disks"`
	MaxDiskBytes int64 `json:"max_disk_bytes"`
}

// DefaultLimits: 16 data disks, 4095 GB per disk (the classic limit).
var DefaultLimits = Limits{MaxDataDisks: 16, MaxDiskBytes: 4095 << 30}

// DiskState is one disk's part of a job's progress.
type DiskState struct {
	activities.DiskProgress
	State string `json:"state"` // pending, running, done, failed
}

// Progress is what the progress query answers.
type Progress struct {
	Kind          string      `json:"kind"`
	VM            string      `json:"vm"`
	Phase         string      `json:"phase"`
	Consistency   string      `json:"consistency,omitempty"`
	BackupType    string      `json:"backup_type,omitempty"`
	RecoveryPoint string      `json:"recovery_point,omitempty"`
	Disks         []DiskState `json:"disks"`
	Notes         []string    `json:"notes,omitempty"`
	Error         string      `json:"error,omitempty"`
	StartedAt     time.Time   `json:"started_at"`
}

func (p *Progress) disk(name string) *DiskState {
	for i := range p.Disks {
		if p.Disks[i].Disk == name {
			return &p.Disks[i]
		}
	}
	p.Disks = append(p.Disks, DiskState{DiskProgress: activities.DiskProgress{Disk: name}, State: "pending"})
	return &p.Disks[len(p.Disks)-1]
}
