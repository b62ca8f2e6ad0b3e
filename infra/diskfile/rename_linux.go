package diskfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// RenameNoReplace renames old to new in dir, failing with an error wrapping
// os.ErrExist instead of replacing an existing new.
func RenameNoReplace(dir *os.File, old, new string) error {
	fd := int(dir.Fd())
	err := unix.Renameat2(fd, old, fd, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return renameNoReplaceByLink(dir, old, new) // file system without RENAME_NOREPLACE
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}
