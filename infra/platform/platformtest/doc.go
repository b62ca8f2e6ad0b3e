// Package platformtest is the conformance suite every platform.Platform
// implementation runs: describe and list, snapshots read back byte for byte,
// sparse extents, busy and changed disks, creating VMs and writing disks.
//
// An implementation's test calls Run with the platform and a Fixture, the
// back door through which the suite prepares VMs and disturbs them the way
// the outside world would (another process writing or locking a disk).
package platformtest
