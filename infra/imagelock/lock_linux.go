//go:build linux

package imagelock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CheckNotWritten returns an error wrapping ErrBusy when another
// process (or another open file description in this one) holds path open for
// writing in a way that announces itself with a lock: a QEMU that holds the
// write permission (byte 101), or a generic writer holding an exclusive
// (F_WRLCK) fcntl lock anywhere in the file. Writers that take no lock at
// all cannot be seen; readers of a snapshot catch them by checking that the
// file did not change.
func CheckNotWritten(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("check lock of %s: %w", path, err)
	}
	defer f.Close()
	return checkFD(f, path, nil, []int{permWrite})
}

// CheckFile is CheckNotWritten through a file the caller opened (for
// instance beneath a folder without following symlinks); path names it in
// errors.
func CheckFile(f *os.File, path string) error {
	return checkFD(f, path, nil, []int{permWrite})
}

// HoldWriteLock locks path as a QEMU that writes it does: shared locks on
// the bytes of the permissions it holds (consistent read, write, write
// unchanged) and on the bytes of those it does not share (write, resize).
// It fails with an error wrapping ErrBusy, holding nothing, if
// another user already writes the image or refuses to share writing.
// release drops the locks; they also go when the process exits.
func HoldWriteLock(path string) (release func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s for writing: %w", path, err)
	}
	if err := LockFile(f, path); err != nil {
		f.Close()
		return nil, err
	}
	var closed bool
	return func() error {
		if closed {
			return nil
		}
		closed = true
		return f.Close()
	}, nil
}

// LockFile takes HoldWriteLock's locks through f, an open file the caller
// owns (opened for reading at least): they are held until f is closed. On
// error some of the locks may be held; close f.
func LockFile(f *os.File, path string) error {
	for _, bytes := range [][]int{offsets(permBase, writerPerms), offsets(sharedBase, writerUnshared)} {
		for _, b := range bytes {
			lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: int64(b), Len: 1}
			if err := fcntlLock(f, true, &lk); err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
					return fmt.Errorf("lock %s for writing: %w (byte %d is locked exclusively)", path, ErrBusy, b)
				}
				return fmt.Errorf("lock %s for writing: byte %d: %w", path, b, err)
			}
		}
	}
	// Like QEMU, lock first and then look for conflicts, so two writers
	// racing for one image cannot both win (our own locks never conflict
	// with a probe through the same open file description).
	return checkFD(f, path, writerPerms, writerUnshared)
}

func offsets(base int, bits []int) []int {
	out := make([]int, len(bits))
	for i, b := range bits {
		out[i] = base + b
	}
	return out
}

// checkFD probes, through f, that nobody refuses to share a permission in
// want (byte 200+bit), that nobody holds a permission in unshared (byte
// 100+bit), and that nobody holds an exclusive lock anywhere in the file.
func checkFD(f *os.File, path string, want, unshared []int) error {
	probe := func(b int) (unix.Flock_t, error) {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(b), Len: 1}
		err := fcntlLock(f, false, &lk)
		return lk, err
	}
	for _, bit := range want {
		lk, err := probe(sharedBase + bit)
		if err != nil {
			return fmt.Errorf("check lock of %s: %w", path, err)
		}
		if lk.Type != unix.F_UNLCK {
			return fmt.Errorf("%s: %w (another user of the image does not share %s: %s covers qemu lock byte %d)", path, ErrBusy, permName(bit), describe(lk), sharedBase+bit)
		}
	}
	for _, bit := range unshared {
		lk, err := probe(permBase + bit)
		if err != nil {
			return fmt.Errorf("check lock of %s: %w", path, err)
		}
		if lk.Type != unix.F_UNLCK {
			// Like QEMU, any lock covering the byte counts, even a generic
			// shared lock over the whole file: better refuse than read a
			// disk that is being written.
			return fmt.Errorf("%s: %w (another user holds the %s permission: %s covers qemu lock byte %d)", path, ErrBusy, permName(bit), describe(lk), permBase+bit)
		}
	}
	// A whole-file probe reports only the first conflicting lock, which may
	// be one of QEMU's shared ones; walk past shared locks to find an
	// exclusive one further on. The walk is bounded by the number of locks.
	var start int64
	for i := 0; i < 4096; i++ {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: start, Len: 0}
		if err := fcntlLock(f, false, &lk); err != nil {
			return fmt.Errorf("check lock of %s: %w", path, err)
		}
		switch lk.Type {
		case unix.F_UNLCK:
			return nil
		case unix.F_WRLCK:
			return fmt.Errorf("%s: %w (%s)", path, ErrBusy, describe(lk))
		}
		if lk.Len == 0 || lk.Start+lk.Len <= start {
			return nil
		}
		start = lk.Start + lk.Len
	}
	return nil
}

// describe says which lock a probe found, for the error message.
func describe(lk unix.Flock_t) string {
	kind := "a shared lock"
	if lk.Type == unix.F_WRLCK {
		kind = "an exclusive lock"
	}
	who := "another open file description" // OFD locks report pid -1
	if lk.Pid > 0 {
		who = fmt.Sprintf("process %d", lk.Pid)
	}
	span := "to the end of the file"
	switch {
	case lk.Len == 1:
		span = "(1 byte)"
	case lk.Len > 1:
		span = fmt.Sprintf("(%d bytes)", lk.Len)
	}
	return fmt.Sprintf("%s of %s at byte %d %s", kind, who, lk.Start, span)
}

func permName(bit int) string {
	switch bit {
	case permConsistentRead:
		return "consistent-read"
	case permWrite:
		return "write"
	case permWriteUnchanged:
		return "write-unchanged"
	case permResize:
		return "resize"
	}
	return fmt.Sprintf("permission bit %d", bit)
}

// fcntlLock sets (set) or probes a lock with OFD locks, falling back to
// process-associated POSIX locks on kernels without them, as QEMU does.
func fcntlLock(f *os.File, set bool, lk *unix.Flock_t) error {
	cmd, fallback := unix.F_OFD_GETLK, unix.F_GETLK
	if set {
		cmd, fallback = unix.F_OFD_SETLK, unix.F_SETLK
	}
	lk.Pid = 0 // required for OFD commands
	err := unix.FcntlFlock(f.Fd(), cmd, lk)
	if errors.Is(err, unix.EINVAL) {
		err = unix.FcntlFlock(f.Fd(), fallback, lk)
	}
	return err
}
