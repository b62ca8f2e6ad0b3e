// Package diskfile writes raw disk image files: a restore that produces
// "disks only" writes each disk into a sparse file in a directory, and the
// images platform writes its disks the same way.
//
// A file is created (or truncated) to its full size up front, so bytes that
// are never written read as zero and take no space: all-zero blocks, which
// the vault never stores, stay holes.
package diskfile
