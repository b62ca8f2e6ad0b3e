// Package activities holds vmvault's Temporal activities. They are thin:
// each calls into infra/ and translates its errors into Temporal application
// errors, non-retryable (with a type name from this package) when retrying
// cannot help.
//
//   - HostActivities run on a hypervisor host's queue (vmvault-host-<name>):
//     anything that touches a VM or its disks, including moving disk data to
//     and from the vault, so bulk data never passes through a central worker.
//     host.go: VMs and snapshots; transfer.go: disk backups; restore.go:
//     staged disk restores and their commit or abort.
//   - VaultActivities run on the central queue: work on the vault alone
//     (parents, recovery points), and GC's look at the running backups
//     (gcrule.go: LongestBackupLimit and CheckGCGrace, the rule that GC's
//     grace period must be longer than every running backup's limit).
//   - ProtectionActivities run on the central queue: policy and protection
//     records (through infra/policystore) and the Temporal Schedules derived
//     from them, through the worker's schedule client (protection.go,
//     schedules.go).
//
// Every activity that touches the vault carries the id of the vault its job
// is pinned to (VaultPin) and refuses, non-retryably, to work on another:
// two workers configured with different vaults cannot split one job.
package activities
