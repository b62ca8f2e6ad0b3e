// Package imagelock detects and takes disk image locks the way QEMU does, so
// that a backup never reads an image a running VM is writing, and a restore
// never writes an image a VM or another restore is using.
//
// QEMU (since 2.10) locks the image files it opens with open file description
// (OFD) fcntl locks, all of them shared (F_RDLCK) and one byte long: for every
// block-layer permission bit i it holds it locks byte 100+i, and for every
// permission it refuses to share with others it locks byte 200+i. A user that
// wants a permission probes byte 200+i, and a user that refuses to share one
// probes byte 100+i, each with an F_WRLCK probe (F_OFD_GETLK): any shared lock
// there conflicts with it. BLK_PERM_WRITE is bit 1, so a QEMU that writes an
// image holds a read lock on byte 101, and one that does not share writing
// holds byte 201.
//
// CheckNotWritten is what a backup reader asks before and while reading;
// HoldWriteLock takes the locks a QEMU writer takes, for restores and tests.
package imagelock
