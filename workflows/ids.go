package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
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
var SearchAttributeNames = []string{
	AttrVM.GetName(), AttrVault.GetName(), AttrKind.GetName(),
	AttrBackupType.GetName(), AttrConsistency.GetName(), AttrRecoveryPoint.GetName(),
}

// BackupWorkflowID is the id of a VM's backup job. One id per VM is how
// Temporal guarantees one backup per VM at a time: starting a second while
// one runs is refused atomically by the server.
func BackupWorkflowID(vm string) string { return "backup-" + vm }

// BackupStartOptions are the start options of an on-demand backup of vm.
func BackupStartOptions(taskQueue string, in BackupVMInput, timeout time.Duration) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: BackupWorkflowID(in.VM), TaskQueue: taskQueue,
		WorkflowExecutionTimeout: ServerTimeout(timeout),
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without this the SDK hands back the running job instead of saying so.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(AttrVM.ValueSet(in.VM), AttrKind.ValueSet(string(KindBackup))),
		StaticSummary:                            fmt.Sprintf("backup %s (host %s)", in.VM, in.Host),
	}
}

// RestoreWorkflowID names a restore job after its target and start time.
func RestoreWorkflowID(in RestoreVMInput, now time.Time) string {
	name := in.TargetVM
	switch {
	case in.Mode == RestoreDisks:
		name = "disks"
	case name == "":
		name = vmOfRef(in.RecoveryPoint)
	}
	return "restore-" + name + "-" + now.UTC().Format("20060102T150405Z")
}

// RestoreStartOptions are the start options of a restore job.
func RestoreStartOptions(taskQueue string, in RestoreVMInput, now time.Time, timeout time.Duration) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: RestoreWorkflowID(in, now), TaskQueue: taskQueue, WorkflowExecutionTimeout: ServerTimeout(timeout),
		TypedSearchAttributes: temporal.NewSearchAttributes(AttrKind.ValueSet(string(KindRestore))),
		StaticSummary:         restoreSummary(in),
	}
}

func restoreSummary(in RestoreVMInput) string {
	switch in.Mode {
	case RestoreNewVM:
		if in.FromSecondary {
			return fmt.Sprintf("restore %s from the secondary → new vm %s", in.RecoveryPoint, in.TargetVM)
		}
		return fmt.Sprintf("restore %s → new vm %s", in.RecoveryPoint, in.TargetVM)
	case RestoreReplace:
		target := in.TargetVM
		if target == "" {
			target = vmOfRef(in.RecoveryPoint)
		}
		return fmt.Sprintf("restore %s → replace disks of %s", in.RecoveryPoint, target)
	default:
		return fmt.Sprintf("restore %s → disk images in %s", in.RecoveryPoint, in.TargetDir)
	}
}

func vmOfRef(ref string) string {
	for i := 0; i < len(ref); i++ {
		if ref[i] == '/' {
			return ref[:i]
		}
	}
	return ref
}

// InventoryWorkflowID is the id of a host's inventory: one long-lived
// workflow per host answers every 'vm list' of it.
func InventoryWorkflowID(host string) string { return "inventory-" + host }

// InventoryStartOptions start a host's inventory if it is not running.
func InventoryStartOptions(taskQueue, host string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: InventoryWorkflowID(host), TaskQueue: taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            "inventory of host " + host + ": answers vmvault vm list",
	}
}

// RetentionWorkflowID is the id of an on-demand retention run, and of the
// Temporal Schedule that runs it daily (whose runs get their own ids).
const RetentionWorkflowID = "retention"

// RetentionStartOptions start a retention run; one runs at a time.
func RetentionStartOptions(taskQueue string, in ApplyRetentionInput) client.StartWorkflowOptions {
	what := "expire recovery points by policy, purge soft-deleted points"
	if in.DryRun {
		what = "dry run"
	}
	return oneAtATime(RetentionWorkflowID, taskQueue, KindRetention, "retention: "+what)
}

// CheckVaultStartOptions start a vault check; checks may run side by side.
func CheckVaultStartOptions(taskQueue string, in CheckVaultInput, now time.Time) client.StartWorkflowOptions {
	what := "metadata and index"
	switch {
	case in.ReadData && in.ReadDataPercent > 0 && in.ReadDataPercent < 100:
		what = fmt.Sprintf("metadata, index and %d%% of the data", in.ReadDataPercent)
	case in.ReadData:
		what = "metadata, index and all data"
	}
	if in.Secondary {
		what += " of the secondary"
	}
	return client.StartWorkflowOptions{
		ID: "vault-check-" + now.UTC().Format("20060102T150405Z"), TaskQueue: taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(AttrKind.ValueSet(string(KindCheck))),
		StaticSummary:         "vault check: " + what,
	}
}

// RepairVaultWorkflowID is the one repair of the vault that may run.
const RepairVaultWorkflowID = "vault-repair"

// RepairVaultStartOptions start a vault repair; one runs at a time.
func RepairVaultStartOptions(taskQueue string) client.StartWorkflowOptions {
	return oneAtATime(RepairVaultWorkflowID, taskQueue, KindRepair, "vault repair: re-index packs, drop the index of lost packs")
}

// RepairSecondaryWorkflowID is the one heal of the secondary that may run.
const RepairSecondaryWorkflowID = "vault-repair-secondary"

// RepairSecondaryStartOptions start a heal of the secondary (vault repair
// --secondary); one runs at a time.
func RepairSecondaryStartOptions(taskQueue string) client.StartWorkflowOptions {
	return oneAtATime(RepairSecondaryWorkflowID, taskQueue, KindRepair, "vault repair --secondary: replace the secondary's damaged copies with the primary's verified ones")
}

// GCWorkflowID is the one garbage collection of the vault that may run.
const GCWorkflowID = "vault-gc"

// GCStartOptions start a garbage collection; one runs at a time. Its
// timeout leaves room for the grace period.
func GCStartOptions(taskQueue string, in GCInput) client.StartWorkflowOptions {
	what := "mark, wait out the grace period, sweep"
	if in.DryRun {
		what = "dry run"
	}
	return oneAtATime(GCWorkflowID, taskQueue, KindGC, "vault gc: "+what)
}

// oneAtATime are the start options of a vault-wide job of which one may
// run at a time: a second start is refused by the server, by its id.
func oneAtATime(id, taskQueue string, kind Kind, summary string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: id, TaskQueue: taskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(AttrKind.ValueSet(string(kind))),
		StaticSummary:                            summary,
	}
}
