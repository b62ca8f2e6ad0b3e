//go:build !linux

package images

import (
	"os"
	"path/filepath"
	"sync/atomic"
)

// noOpenat2 is always so here; tests set it on Linux to run the fallback.
var noOpenat2 atomic.Bool

// openBeneath opens rel (a local path) beneath dir without following any
// symlink: openat with O_NOFOLLOW on every element (no openat2 here).
// Errors of a path that tries wrap errEscape.
func openBeneath(dir *os.File, rel string, flags int, perm uint32) (*os.File, error) {
	f, err := openWalk(dir, rel, flags, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir.Name(), rel), Err: err}
	}
	return f, nil
}

// renameDirNoReplace cannot refuse to replace here: ok is false, nothing
// renamed.
func renameDirNoReplace(dir *os.File, old, new string) (ok bool, err error) {
	return false, nil
}
