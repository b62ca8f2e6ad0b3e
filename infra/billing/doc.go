// Package billing computes a vault's billing basis the way Azure Backup
// bills protected VMs: per VM, whether it is protected and billable, its
// count of protected instances (by the size of its latest recovery point)
// and its storage basis (what its live recovery points stored). It reads
// nothing itself: it works on the vault's recovery points, protection
// records and soft-deleted points, which the caller lists, so the rule is
// tested here and the CLI only prints it.
package billing
