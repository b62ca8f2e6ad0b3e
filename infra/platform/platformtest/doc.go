// Package platformtest is the conformance suite every platform.Platform
// implementation runs: describe and list, snapshots read back byte for byte,
// sparse extents, busy and changed disks, and restores: a new VM prepared,
// staged and committed; a stopped VM's disks replaced with the old images
// kept; a failed restore (staged, then aborted) leaving every disk
// byte-identical; a retried StageDisk resuming; commits refused for a
// running VM and a disk another process writes.
//
// An implementation's test calls Run with the platform and a Fixture, the
// back door through which the suite prepares VMs and disturbs them the way
// the outside world would (another process writing or locking a disk,
// starting the VM).
package platformtest
