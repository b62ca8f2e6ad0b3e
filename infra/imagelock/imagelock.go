package imagelock

import "errors"

// ErrBusy is returned (wrapped) when another user of an image writes it or
// refuses to share writing. platform.ErrDiskBusy is this same error, so that
// imagelock needs nothing from the platform package and users of either can
// test with errors.Is.
var ErrBusy = errors.New("disk is held open for writing by another process")

// Byte offsets of QEMU's lock bytes (block/file-posix.c RAW_LOCK_*_BASE) and
// the permission bits of block.h that matter here.
const (
	permBase   = 100
	sharedBase = 200

	permConsistentRead = 0 // BLK_PERM_CONSISTENT_READ
	permWrite          = 1 // BLK_PERM_WRITE
	permWriteUnchanged = 2 // BLK_PERM_WRITE_UNCHANGED
	permResize         = 3 // BLK_PERM_RESIZE
)

// writerPerms are the permissions a QEMU guest disk that is writable holds;
// writerUnshared are those it does not share with other users of the image
// (a guest device shares consistent reads and unchanged writes, not writes
// or resizes, unless share-rw=on).
var (
	writerPerms    = []int{permConsistentRead, permWrite, permWriteUnchanged}
	writerUnshared = []int{permWrite, permResize}
)
