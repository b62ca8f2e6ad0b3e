package workflows

import "github.com/vmvault/vmvault/activities"

// WorkflowRegistry is what workflows are registered with: a worker.Worker
// or a worker.WorkflowReplayer.
type WorkflowRegistry interface {
	RegisterWorkflow(w any)
}

// ActivityRegistry is what activities are registered with: a worker.Worker.
type ActivityRegistry interface {
	RegisterActivity(a any)
}

// All is every workflow the worker runs on the central queue, in one list:
// the worker registers it and the replay tests replay histories of each
// (testsuite/replay fails for one with no recorded history), so a new
// workflow is added here and nowhere else.
func All() []any {
	return []any{
		BackupVM,
		ScheduledBackup,
		RestoreVM,
		Inventory,
		ApplyRetention,
		CheckVault,
		RepairVault,
		CollectGarbage,
		ReplicateVault,
		Protect,
		Unprotect,
		UpdatePolicy,
		SyncSchedule,
	}
}

// RegisterWorkflows registers All with r.
func RegisterWorkflows(r WorkflowRegistry) {
	for _, w := range All() {
		r.RegisterWorkflow(w)
	}
}

// RegisterCentral registers what the central queue serves: every workflow,
// the vault activities and the protection activities (records and
// schedules).
func RegisterCentral[R interface {
	WorkflowRegistry
	ActivityRegistry
}](r R, vault *activities.VaultActivities, prot *activities.ProtectionActivities) {
	RegisterWorkflows(r)
	r.RegisterActivity(vault)
	r.RegisterActivity(prot)
}

// RegisterHost registers what a host's queue serves: the host activities
// (disks, snapshots, the platform).
func RegisterHost(r ActivityRegistry, host *activities.HostActivities) {
	r.RegisterActivity(host)
}
