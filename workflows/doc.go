// Package workflows holds vmvault's Temporal workflows. They only
// orchestrate: every side effect is an activity, on the central queue (vault
// work) or on the queue of the host that owns the VM (disk and platform
// work). Nothing here does I/O.
//
//   - backup.go: BackupVM, its input, limits and stages.
//   - restore.go: RestoreVM: staged disk restores, one commit, compensation.
//   - inventory.go: Inventory, a host's VM directory answering 'vm list'.
//   - ids.go: workflow ids, start options and search attributes, built in one
//     place for the CLI and (later) schedules.
//   - protect.go, policyupdate.go, schedulesync.go: Protect, Unprotect,
//     UpdatePolicy and SyncSchedule, the control plane of protection: records
//     first, then the Temporal Schedules derived from them.
//   - progress.go, states.go: the progress query and the typed states.
//   - options.go, fanout.go, errors.go: activity options, the per-disk
//     fan-out, and error helpers.
package workflows
