package images

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// errEscape says a path is a symlink, passes through one, or leads out of
// the folder it must stay beneath.
var errEscape = errors.New("symbolic link or path outside the vm folder")

// openFlags are added to every open beneath a folder: a FIFO or device
// must not block or become a terminal before it is refused as not regular.
const openFlags = unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY

// escapeErr names the errors that mean the path tried to leave or follow a
// link (ELOOP from O_NOFOLLOW and RESOLVE_NO_SYMLINKS, EXDEV from
// RESOLVE_BENEATH).
func escapeErr(err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w (%v)", errEscape, err)
	}
	return err
}

// splitLocal checks that rel is a local path and splits it in elements.
func splitLocal(rel string) ([]string, error) {
	if rel == "." {
		return nil, nil
	}
	if !filepath.IsLocal(rel) || filepath.Clean(rel) != rel {
		return nil, fmt.Errorf("%q: %w", rel, errEscape)
	}
	return strings.Split(rel, string(filepath.Separator)), nil
}

// openWalk is openBeneath one element at a time, each opened with
// O_NOFOLLOW: the fallback where openat2 is missing.
func openWalk(dir *os.File, rel string, flags int, perm uint32) (*os.File, error) {
	elems, err := splitLocal(rel)
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		elems = []string{"."}
	}
	fd := int(dir.Fd())
	for i, e := range elems {
		fl := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | openFlags
		if i == len(elems)-1 {
			fl = flags | unix.O_NOFOLLOW | openFlags
		}
		next, err := unix.Openat(fd, e, fl, perm)
		if fd != int(dir.Fd()) {
			unix.Close(fd)
		}
		if errors.Is(err, unix.ENOTDIR) && i < len(elems)-1 {
			err = unix.ELOOP // a symlink (or file) where a folder must be
		}
		if err != nil {
			return nil, escapeErr(err)
		}
		fd = next
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), rel)), nil
}

// openRegular opens rel beneath dir without following symlinks and checks
// that it is a regular file.
func openRegular(dir *os.File, rel string, flags int, perm uint32) (*os.File, error) {
	f, err := openBeneath(dir, rel, flags, perm)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", f.Name(), st.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// mkdirBeneath creates the folders of rel beneath dir that are missing,
// never following a symlink, and returns the deepest one opened.
func mkdirBeneath(dir *os.File, rel string) (*os.File, error) {
	elems, err := splitLocal(rel)
	if err != nil {
		return nil, err
	}
	for i := range elems {
		sub := filepath.Join(elems[:i+1]...)
		parent, err := openBeneath(dir, filepath.Join(append([]string{"."}, elems[:i]...)...), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return nil, err
		}
		err = unix.Mkdirat(int(parent.Fd()), elems[i], 0o755)
		parent.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create folder %s: %w", filepath.Join(dir.Name(), sub), err)
		}
	}
	return openBeneath(dir, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}
