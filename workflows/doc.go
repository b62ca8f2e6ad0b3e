// Package workflows holds vmvault's Temporal workflows. They only
// orchestrate: every side effect is an activity, on the central queue (vault
// work) or on the queue of the host that owns the VM (disk and platform
// work). Nothing here does I/O.
//
// Files, one line each:
//   - backup.go: BackupVM, its input, limits and stages.
//   - scheduled.go: ScheduledBackup, a protected VM's schedule action; it
//     starts BackupVM as a child under the VM's one backup id.
//   - schedules.go: the Temporal Schedule of a protected VM from its policy.
//   - kept.go: the instant-restore tier (snapshots kept on the host).
//   - restore.go: RestoreVM: staged disk restores, one commit, compensation.
//   - inventory.go: Inventory, a host's VM directory answering 'vm list'.
//   - retention.go: ApplyRetention and the vault's retention schedule.
//   - gc.go: CollectGarbage: mark, grace period, sweep.
//   - vaultcheck.go: CheckVault and RepairVault.
//   - checkschedule.go: the vault's daily check schedule.
//   - replicate.go: ReplicateVault, copying the vault to its secondary.
//   - registry.go: All, the one list of workflows (and Activities) the
//     worker registers and the replay tests replay.
//   - ids.go: workflow ids, start options and search attributes, built in one
//     place for the CLI and schedules.
//   - limit.go: a job's time limit, enforced inside the workflow.
//   - protect.go, policyupdate.go, schedulesync.go: Protect, Unprotect,
//     UpdatePolicy and SyncSchedule, the control plane of protection: records
//     first, then the Temporal Schedules derived from them.
//   - progress.go, states.go: the progress query and the typed states.
//   - options.go, fanout.go, errors.go: activity options, the per-disk
//     fan-out, and error helpers.
//   - doc.go: this list.
package workflows
