package diskfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplaceByLink links new to old (which fails if new exists) and
// then removes old: the no-replace rename of file systems that lack one.
func renameNoReplaceByLink(dir *os.File, old, new string) error {
	fd := int(dir.Fd())
	if err := unix.Linkat(fd, old, fd, new, 0); err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	if err := unix.Unlinkat(fd, old, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}
