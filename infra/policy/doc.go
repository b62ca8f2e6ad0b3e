// Package policy is what a protected VM's backups follow: a Policy names a
// Schedule (when backups run), a Retention (which recovery points are
// kept), how many days a backup's snapshot is kept for instant restore, the
// consistency wanted, and a Tier, as Azure Backup's VM policies do. It is
// pure: no I/O, no Temporal. Policies are stored as vault records
// (infra/vault) and turned into Temporal Schedules by workflows.ScheduleFor.
//
// Tiers (Azure's standard and enhanced policies):
//   - standard: one scheduled backup a day, daily at one time or weekly on
//     some days at one time; instant restore 1-5 days.
//   - enhanced: also hourly, every 4, 6, 8 or 12 hours within a daily window
//     (WindowStart, WindowHours); instant restore 1-30 days.
//
// Staggering: a policy's VMs do not all start at its time. Each VM gets a
// deterministic Offset (a hash of its name) within the policy's spread:
// WindowHours after each time for daily and weekly schedules (2 hours when
// unset), or the interval EveryHours for hourly schedules, so that every run
// of a VM still starts inside its window. Slots turns a policy and a VM into
// the times of day (and days of week) its backups start.
//
// The policy named "default" always exists: Default() unless a record
// overrides it.
package policy
