package diskfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/imagelock"
)

var (
	// ErrNotStaged: Commit found no staging file for the stage.
	ErrNotStaged = errors.New("nothing staged")
	// ErrExists: Commit would replace an existing file and was not forced.
	ErrExists = errors.New("target file exists")
	// ErrSymlink: a path element is a symbolic link, which is never followed.
	ErrSymlink = errors.New("symbolic link refused")
)

const stagingInfix = ".restore-"

// StageHash is the short, file-name-safe form of a stage id: stage ids are
// job ids and may hold any character.
func StageHash(stage string) string {
	sum := sha256.Sum256([]byte(stage))
	return hex.EncodeToString(sum[:8])
}

// StagingName is the name of the staging file of name for stage, in the same
// directory: hidden, so it is never taken for a disk or a VM.
func StagingName(name, stage string) string {
	return "." + name + stagingInfix + StageHash(stage)
}

// IsStagingName reports whether a directory entry is a staging file of
// stage.
func IsStagingName(entry, stage string) bool {
	return strings.HasPrefix(entry, ".") && strings.HasSuffix(entry, stagingInfix+StageHash(stage)) && len(entry) > 1+len(stagingInfix)+16
}

// CheckName checks that name is a single, visible path element.
func CheckName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("bad disk file name %q: want one path element not starting with a dot", name)
	}
	return nil
}

// OpenDir opens dir as a directory without following a symlink in its last
// element. The caller closes it.
func OpenDir(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) {
		// O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR; say what it is.
		if st, lerr := os.Lstat(dir); lerr == nil && st.Mode()&os.ModeSymlink != 0 {
			err = unix.ELOOP
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open directory", Path: dir, Err: symlinkErr(err)}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// symlinkErr wraps ELOOP, what open says of a symlink with O_NOFOLLOW, as
// ErrSymlink.
func symlinkErr(err error) error {
	if errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%w (%v)", ErrSymlink, err)
	}
	return err
}

// OpenAt opens name in dir without following a symlink; name is one path
// element. The result is a regular file, else an error.
func OpenAt(dir *os.File, name string, flags int, perm uint32) (*os.File, error) {
	path := filepath.Join(dir.Name(), name)
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: symlinkErr(err)}
	}
	f := os.NewFile(uintptr(fd), path)
	if err := CheckRegular(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CheckRegular returns an error unless f is a regular file.
func CheckRegular(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", f.Name(), st.Mode().Type())
	}
	return nil
}

// SyncDir makes renames and creations in dir durable.
func SyncDir(dir *os.File) error {
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir.Name(), err)
	}
	return nil
}

// Staged is a disk being written into its staging file.
type Staged struct {
	f       *os.File
	dir     *os.File // synced on Close when the file was created
	path    string
	size    int64
	resumed bool
}

// Stage opens the staging file of dir/name for stage, sized size bytes: a
// new, sparse, all-zero one, or the one an earlier attempt of the same stage
// left with that size, as it was (Resumed). The target dir/name is not
// touched. dir must be a real directory (not a symlink).
func Stage(dir, name string, size int64, stage string) (*Staged, error) {
	d, err := OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", filepath.Join(dir, name), err)
	}
	defer d.Close()
	return StageAt(d, name, size, stage)
}

// StageAt is Stage in an open directory.
func StageAt(dir *os.File, name string, size int64, stage string) (*Staged, error) {
	target := filepath.Join(dir.Name(), name)
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("stage %s: %w", target, err)
	}
	if size < 0 {
		return nil, fmt.Errorf("stage %s: negative size %d", target, size)
	}
	sname := StagingName(name, stage)
	created := true
	f, err := OpenAt(dir, sname, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		created = false
		f, err = OpenAt(dir, sname, unix.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", target, err)
	}
	s := &Staged{f: f, path: f.Name(), size: size}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stage %s: %w", target, err)
	}
	switch {
	case !created && st.Size() == size:
		s.resumed = true
	default:
		// A new file, or one of another size (the earlier attempt was
		// asked for another size): start empty. Truncating to zero first
		// drops old blocks; growing again leaves one hole.
		if err := f.Truncate(0); err == nil {
			err = f.Truncate(size)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("stage %s: size %d: %w", target, size, err)
		}
	}
	if created {
		// Keep the directory to sync on Close, so the new entry is durable.
		d, err := unix.Dup(int(dir.Fd()))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("stage %s: %w", target, err)
		}
		s.dir = os.NewFile(uintptr(d), dir.Name())
	}
	return s, nil
}

// WriteAt writes into the staging file; writes beyond its size are refused.
// It is safe for concurrent use with non-overlapping ranges.
func (s *Staged) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > s.size || int64(len(p)) > s.size-off {
		return 0, fmt.Errorf("write %s at %d+%d: beyond disk size %d", s.path, off, len(p), s.size)
	}
	n, err := s.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", s.path, err)
	}
	return n, nil
}

// Resumed reports that the staging file was left by an earlier attempt of
// the same stage and kept its content.
func (s *Staged) Resumed() bool { return s.resumed }

// Size is the staged disk's size in bytes.
func (s *Staged) Size() int64 { return s.size }

// Path is the staging file's path.
func (s *Staged) Path() string { return s.path }

// Sync makes what was written so far durable, so that a checkpoint saying so
// is true after a crash.
func (s *Staged) Sync() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.path, err)
	}
	return nil
}

// Close syncs the staging file (and, for a new one, its directory) and
// closes it. The disk stays staged until Commit or Abort.
func (s *Staged) Close() error {
	if s.f == nil {
		return nil
	}
	f, d := s.f, s.dir
	s.f, s.dir = nil, nil
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if d != nil {
		if err == nil {
			err = d.Sync()
		}
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("close staged disk %s: %w", s.path, err)
	}
	return nil
}

// Commit puts the staging file of dir/name for stage in place and returns
// the target's path. An existing target is refused (ErrExists) unless force;
// a forced one is replaced only while this process holds its image write
// lock (an error wrapping imagelock.ErrBusy if a VM or another restore uses
// it). The staging file is synced before the rename and dir after it.
// Without a staging file Commit fails with ErrNotStaged.
func Commit(dir, name, stage string, force bool) (string, error) {
	target := filepath.Join(dir, name)
	d, err := OpenDir(dir)
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", target, err)
	}
	defer d.Close()
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("commit %s: %w", target, err)
	}
	sname := StagingName(name, stage)
	staged, err := OpenAt(d, sname, unix.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("commit %s: %w for stage %q (%s is missing)", target, ErrNotStaged, stage, filepath.Join(dir, sname))
	}
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", target, err)
	}
	defer staged.Close()
	// The new image is locked from before it appears under its name until
	// the rename is durable.
	if err := imagelock.LockFile(staged, staged.Name()); err != nil {
		return "", fmt.Errorf("commit %s: %w", target, err)
	}
	old, err := OpenAt(d, name, unix.O_RDONLY, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		old = nil
	case err != nil:
		return "", fmt.Errorf("commit %s: %w", target, err)
	case !force:
		old.Close()
		return "", fmt.Errorf("commit %s: %w; it is left as it is (replace it on purpose with force)", target, ErrExists)
	default:
		defer old.Close()
		if err := imagelock.LockFile(old, target); err != nil {
			return "", fmt.Errorf("commit %s: %w", target, err)
		}
	}
	if err := staged.Sync(); err != nil {
		return "", fmt.Errorf("commit %s: sync staged file: %w", target, err)
	}
	if old != nil {
		err = unix.Renameat(int(d.Fd()), sname, int(d.Fd()), name)
	} else {
		err = RenameNoReplace(d, sname, name)
	}
	if err != nil {
		return "", fmt.Errorf("commit %s: rename staged file: %w", target, err)
	}
	if err := SyncDir(d); err != nil {
		return "", fmt.Errorf("commit %s: %w", target, err)
	}
	return target, nil
}

// Abort removes the staging files of stage in dir. A missing dir or no
// staging file is not an error.
func Abort(dir, stage string) error {
	d, err := OpenDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("abort restore in %s: %w", dir, err)
	}
	defer d.Close()
	return AbortAt(d, stage)
}

// AbortAt is Abort in an open directory.
func AbortAt(dir *os.File, stage string) error {
	// Read the entries through a second descriptor: reading moves the
	// directory offset of the one it uses.
	r, err := reopenDir(dir)
	if err != nil {
		return fmt.Errorf("abort restore in %s: %w", dir.Name(), err)
	}
	names, err := r.Readdirnames(-1)
	r.Close()
	if err != nil {
		return fmt.Errorf("abort restore in %s: %w", dir.Name(), err)
	}
	var removed bool
	for _, n := range names {
		if !IsStagingName(n, stage) {
			continue
		}
		if err := unix.Unlinkat(int(dir.Fd()), n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("abort restore: remove %s: %w", filepath.Join(dir.Name(), n), err)
		}
		removed = true
	}
	if removed {
		return SyncDir(dir)
	}
	return nil
}

// reopenDir opens dir again (".") as its own descriptor.
func reopenDir(dir *os.File) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir.Name()), nil
}
