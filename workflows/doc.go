// Package workflows holds vmvault's Temporal workflows: BackupVM, RestoreVM
// and ListVMs. They only orchestrate: every side effect is an activity, on
// the central queue (vault work) or on the queue of the host that owns the
// VM (disk and platform work). Nothing here does I/O.
package workflows
