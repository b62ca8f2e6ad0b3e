package workflows

// Kind is what a job does; it is the VmvaultKind search attribute.
type Kind string

const (
	KindBackup  Kind = "backup"
	KindRestore Kind = "restore"
	KindCheck   Kind = "check"
	KindRepair  Kind = "repair"
	// KindGC is a garbage collection (CollectGarbage).
	KindGC Kind = "gc"
	// KindScheduled is a schedule's run: it starts the VM's backup as a
	// child, or is skipped when a backup of the VM is running.
	KindScheduled Kind = "scheduled"
	// KindReplicate copies the vault to its secondary (ReplicateVault).
	KindReplicate Kind = "replicate"
)

// Phase is where a job is, in the progress query.
type Phase string

// Phases of a job, in order.
const (
	PhaseValidating   Phase = "validating"
	PhaseExtension    Phase = "extension"
	PhaseSnapshot     Phase = "snapshot"
	PhaseTransfer     Phase = "transfer"
	PhaseCommit       Phase = "recovery-point"
	PhaseCleanup      Phase = "cleanup"
	PhaseCreateVM     Phase = "create-vm"
	PhaseRestoreDisks Phase = "restore-disks"
	PhaseCommitDisks  Phase = "commit-disks"
	PhaseChecking     Phase = "checking"
	PhaseRepairing    Phase = "repairing"
	PhaseMarking      Phase = "marking"
	PhaseGrace        Phase = "grace-period"
	PhaseSweeping     Phase = "sweeping"
	PhaseReplicating  Phase = "replicating"
	PhaseDone         Phase = "done"
	PhaseFailed       Phase = "failed"
)

// DiskState is one disk's state within a job.
type DiskState string

const (
	DiskPending DiskState = "pending"
	DiskRunning DiskState = "running"
	DiskDone    DiskState = "done"
	DiskFailed  DiskState = "failed"
)

// Finished reports whether the disk is done or failed.
func (s DiskState) Finished() bool { return s == DiskDone || s == DiskFailed }

// RestoreMode is where a restore writes.
type RestoreMode string

const (
	// RestoreNewVM creates a new VM from the recovery point.
	RestoreNewVM RestoreMode = "new-vm"
	// RestoreReplace replaces the disks of an existing stopped VM.
	RestoreReplace RestoreMode = "replace"
	// RestoreDisks writes the disk images into a directory.
	RestoreDisks RestoreMode = "disks"
)
