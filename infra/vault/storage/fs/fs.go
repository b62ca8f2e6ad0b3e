package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// tempPrefix starts the name of every file being written; List skips such
// files and keys may not use the prefix for their last element.
const tempPrefix = ".tmp-"

type fsBackend struct {
	root string // absolute
}

var _ storage.Backend = (*fsBackend)(nil)

// New returns a backend storing objects under dir. dir is created by the
// first Put, not here: opening a vault that is not there (a mistyped
// path) leaves nothing behind. A dir that exists must be a directory.
func New(dir string) (storage.Backend, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open fs backend %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("open fs backend %s: not a directory", dir)
	}
	return &fsBackend{root: abs}, nil
}

// Open opens the backend a file:// URL names: file:///abs/path, or
// file://relative/path (relative to the working directory).
func Open(_ context.Context, u *url.URL) (storage.Backend, error) {
	p := u.Path
	if u.Host != "" && u.Host != "localhost" {
		p = u.Host + u.Path
	}
	if p == "" {
		return nil, fmt.Errorf("file vault URL %q has no path", u.String())
	}
	return New(p)
}

func (b *fsBackend) Location() string { return "file://" + filepath.ToSlash(b.root) }

// path checks key and returns its file path. Keys are relative, clean,
// slash-separated paths; anything that could escape the root is refused.
func (b *fsBackend) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || path.Clean(key) != key ||
		key == ".." || strings.HasPrefix(key, "../") || strings.Contains(key, "\\") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	if strings.HasPrefix(path.Base(key), tempPrefix) {
		return "", fmt.Errorf("invalid key %q: last element starts with %q", key, tempPrefix)
	}
	return filepath.Join(b.root, filepath.FromSlash(key)), nil
}

func notFound(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

func (b *fsBackend) Put(ctx context.Context, key string, data []byte) error {
	return b.put(ctx, key, data, false)
}

// PutIfAbsent links the finished temp file into place: link(2) fails if the
// name exists, so of two concurrent writers exactly one wins.
func (b *fsBackend) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return b.put(ctx, key, data, true)
}

func (b *fsBackend) put(ctx context.Context, key string, data []byte, exclusive bool) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	p, err := b.path(key)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	dir := filepath.Dir(p)
	if err := b.mkdirAll(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("put %s: write: %w", key, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("put %s: sync: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("put %s: close: %w", key, err)
	}
	// CreateTemp makes the file 0600; objects are as readable as the directory.
	if err = os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("put %s: chmod: %w", key, err)
	}
	if exclusive {
		err = os.Link(tmp, p)
		_ = os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("put %s: %w", key, storage.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("put %s: link: %w", key, err)
		}
	} else if err = os.Rename(tmp, p); err != nil {
		return fmt.Errorf("put %s: rename: %w", key, err)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents below the root, fsyncing the
// parent of every directory it creates so the new entry survives a crash.
func (b *fsBackend) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("mkdir %s: not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := b.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) { // a concurrent Put made it
			return nil
		}
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

func (b *fsBackend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	p, err := b.path(key)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, notFound("get", key, err)
	}
	return data, nil
}

func (b *fsBackend) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("get %s: invalid range offset %d length %d", key, offset, length)
	}
	p, err := b.path(key)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound("get", key, err)
	}
	defer f.Close()
	buf := make([]byte, length)
	n, err := f.ReadAt(buf, offset)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == length) {
		if errors.Is(err, io.EOF) { // the file is shorter: no retry changes that
			err = storage.ErrRange
		}
		return nil, fmt.Errorf("get %s range %d+%d: read %d bytes: %w", key, offset, length, n, err)
	}
	return buf, nil
}

func (b *fsBackend) Stat(ctx context.Context, key string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("stat %s: %w", key, err)
	}
	p, err := b.path(key)
	if err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, notFound("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
	}
	return fi.Size(), nil
}

func (b *fsBackend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	p, err := b.path(key)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func (b *fsBackend) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	return b.ListAfter(ctx, prefix, "", fn)
}

// ListAfter walks the prefix's directory, skipping subdirectories whose
// keys all sort up to after, and the keys up to after.
func (b *fsBackend) ListAfter(ctx context.Context, prefix, after string, fn func(key string, size int64) error) error {
	// Walk only the deepest directory the prefix names, not the whole vault.
	start := b.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir := prefix[:i]
		if dir != "" {
			if path.Clean(dir) != dir || strings.HasPrefix(dir, "/") || dir == ".." || strings.HasPrefix(dir, "../") {
				return fmt.Errorf("list %q: invalid prefix", prefix)
			}
			start = filepath.Join(b.root, filepath.FromSlash(dir))
		}
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // start is missing, or removed under us
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			// A directory whose keys all sort before after is skipped
			// whole: the vault buckets keys it lists often by time.
			if rel, err := filepath.Rel(b.root, p); err == nil && rel != "." {
				dir := filepath.ToSlash(rel) + "/"
				if dir < after && !strings.HasPrefix(after, dir) {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) || key <= after {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // deleted while listing
				return nil
			}
			return err
		}
		return fn(key, fi.Size())
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}
