package images

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noOpenat2 is set once the kernel says it has no openat2 (before 5.6).
var noOpenat2 atomic.Bool

// openBeneath opens rel (a local path) beneath dir without following any
// symlink and without leaving dir: openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS, or, on kernels without it, openat with O_NOFOLLOW on
// every element. Errors of a path that tries either wrap errEscape.
func openBeneath(dir *os.File, rel string, flags int, perm uint32) (*os.File, error) {
	if _, err := splitLocal(rel); err != nil {
		return nil, err
	}
	if !noOpenat2.Load() {
		how := unix.OpenHow{
			Flags:   uint64(flags | openFlags),
			Mode:    uint64(perm),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
		}
		fd, err := unix.Openat2(int(dir.Fd()), rel, &how)
		if err == nil {
			return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), rel)), nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return nil, &os.PathError{Op: "open", Path: filepath.Join(dir.Name(), rel), Err: escapeErr(err)}
		}
		noOpenat2.Store(true)
	}
	f, err := openWalk(dir, rel, flags, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir.Name(), rel), Err: err}
	}
	return f, nil
}

// renameDirNoReplace renames old to new in dir unless new exists (an error
// wrapping EEXIST); ok is false where the file system cannot refuse to
// replace, and nothing was renamed.
func renameDirNoReplace(dir *os.File, old, new string) (ok bool, err error) {
	fd := int(dir.Fd())
	err = unix.Renameat2(fd, old, fd, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return false, nil
	}
	return err == nil, err
}
