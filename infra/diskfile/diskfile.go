package diskfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmvault/vmvault/infra/platform"
)

// Create creates the raw image file path, or empties an existing one, sized
// size bytes, all zero and sparse. The returned writer's WriteAt refuses
// writes beyond size; Close syncs the file (and, for a new file, its
// directory) to stable storage.
func Create(path string, size int64) (platform.DiskWriter, error) {
	if size < 0 {
		return nil, fmt.Errorf("create disk file %s: negative size %d", path, size)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create disk file: %w", err)
	}
	// Truncating to zero first drops old content and its blocks; growing
	// again leaves one hole that reads as zero.
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("create disk file %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("create disk file %s: size %d: %w", path, size, err)
	}
	return &writer{f: f, path: path, size: size, syncDir: created}, nil
}

type writer struct {
	f       *os.File
	path    string
	size    int64
	syncDir bool
}

var _ platform.DiskWriter = (*writer)(nil)

// WriteAt is safe for concurrent use with non-overlapping ranges.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("write %s at %d+%d: beyond disk size %d", w.path, off, len(p), w.size)
	}
	n, err := w.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", w.path, err)
	}
	return n, nil
}

func (w *writer) Close() error {
	if w.f == nil {
		return nil
	}
	f := w.f
	w.f = nil
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && w.syncDir {
		err = syncDir(filepath.Dir(w.path))
	}
	if err != nil {
		return fmt.Errorf("close disk file %s: %w", w.path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
