package images

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/platform"
)

// ConfigFile is the name of the VM definition inside a VM folder.
const ConfigFile = "vm.json"

const (
	formatRaw   = "raw"
	formatQcow2 = "qcow2"
	maxLUN      = 63
)

// validName is what a VM or disk name may look like: it becomes a folder or
// file name, so no separators, no leading dot.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

type images struct {
	root string
	// mu serializes restores' changes to VM folders by this process
	// (preparing, committing and aborting).
	mu sync.Mutex
	// hook, when set (tests), runs at each named step of a commit; an
	// error stops the commit there as a crash would.
	hook func(step string) error
}

var _ platform.Platform = (*images)(nil)

// New returns the images platform rooted at root, creating root if needed.
func New(root string) (platform.Platform, error) {
	return newImages(root)
}

func newImages(root string) (*images, error) {
	if root == "" {
		return nil, errors.New("images platform: empty root directory")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("images platform root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("images platform root: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("images platform root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("images platform root %s is not a directory", abs)
	}
	return &images{root: abs}, nil
}

func (p *images) vmDir(name string) string { return filepath.Join(p.root, name) }

// openRoot opens the root folder. The root itself may be a symlink (it is
// configuration); nothing beneath it may.
func (p *images) openRoot() (*os.File, error) {
	fd, err := unix.Open(p.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("images platform root: %w", &os.PathError{Op: "open", Path: p.root, Err: err})
	}
	return os.NewFile(uintptr(fd), p.root), nil
}

// openVMDir opens the folder of vm name, which must be a real folder beneath
// the root, not a symlink.
func (p *images) openVMDir(name string) (*os.File, error) {
	if !validName.MatchString(name) {
		return nil, p.notFound(name)
	}
	root, err := p.openRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	dir, err := openBeneath(root, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	switch {
	case isNotExist(err):
		return nil, p.notFound(name)
	case errors.Is(err, errEscape) || errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("vm %q: %w: %s is not a folder (a symlink is never followed): %v", name, platform.ErrInvalidVM, p.vmDir(name), err)
	case err != nil:
		return nil, fmt.Errorf("vm %q: %w", name, err)
	}
	return dir, nil
}

// ListVMs returns every VM under the root, sorted by name. Folders without
// vm.json are not VMs and are skipped, and so are hidden entries (restores
// in progress) and symlinks. If some vm.json files are invalid, ListVMs
// still returns the valid VMs, together with an error wrapping
// platform.ErrInvalidVM that names each bad file.
func (p *images) ListVMs(ctx context.Context) ([]platform.VM, error) {
	entries, err := os.ReadDir(p.root)
	if err != nil {
		return nil, fmt.Errorf("list vms in %s: %w", p.root, err)
	}
	var (
		vms  []platform.VM
		errs []error
	)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || !validName.MatchString(e.Name()) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(p.root, e.Name(), ConfigFile)); isNotExist(err) {
			continue
		}
		vm, err := p.DescribeVM(ctx, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vms = append(vms, vm)
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	return vms, errors.Join(errs...)
}

// DescribeVM reads and validates <root>/<name>/vm.json and checks it against
// the image files.
func (p *images) DescribeVM(ctx context.Context, name string) (platform.VM, error) {
	dir, err := p.openVMDir(name)
	if err != nil {
		return platform.VM{}, err
	}
	defer dir.Close()
	vm, err := p.readConfigIn(dir, name)
	if err != nil {
		return platform.VM{}, err
	}
	if err := p.checkFiles(dir, &vm); err != nil {
		return platform.VM{}, err
	}
	return vm, nil
}

func (p *images) notFound(name string) error {
	return fmt.Errorf("vm %q not found in %s: %w", name, p.root, platform.ErrVMNotFound)
}

// readConfig reads and validates vm.json without looking at the images.
func (p *images) readConfig(name string) (platform.VM, error) {
	dir, err := p.openVMDir(name)
	if err != nil {
		return platform.VM{}, err
	}
	defer dir.Close()
	return p.readConfigIn(dir, name)
}

// readConfigIn reads vm.json in the opened folder of vm name.
func (p *images) readConfigIn(dir *os.File, name string) (platform.VM, error) {
	path := filepath.Join(p.vmDir(name), ConfigFile)
	data, err := readFileAt(dir, ConfigFile)
	if isNotExist(err) {
		return platform.VM{}, p.notFound(name)
	}
	if errors.Is(err, errEscape) {
		return platform.VM{}, fmt.Errorf("%s: %w: vm %q: %v", path, platform.ErrInvalidVM, name, err)
	}
	if err != nil {
		return platform.VM{}, fmt.Errorf("read vm %q: %w", name, err)
	}
	vm, err := parseConfig(data, name)
	if err != nil {
		return platform.VM{}, fmt.Errorf("%s: %w", path, err)
	}
	return vm, nil
}

// diskErr reports a disk image that cannot be used: a symlink, a path that
// leaves the vm folder, not a regular file, or missing.
func (p *images) diskErr(vm string, d platform.Disk, err error) error {
	cfg := filepath.Join(p.vmDir(vm), ConfigFile)
	return fmt.Errorf("%s: %w: vm %q disk %q: %s: %w", cfg, platform.ErrInvalidVM, vm, d.Name, filepath.Join(p.vmDir(vm), d.File), err)
}

// openImage opens the image of disk d of vm in its opened folder dir,
// beneath it and without following symlinks.
func (p *images) openImage(dir *os.File, vm string, d platform.Disk, flags int) (*os.File, error) {
	f, err := openRegular(dir, d.File, flags, 0)
	if err != nil {
		return nil, p.diskErr(vm, d, err)
	}
	return f, nil
}

// checkFiles checks that every image exists and has the size vm.json says,
// filling in size_bytes where it is 0.
func (p *images) checkFiles(dir *os.File, vm *platform.VM) error {
	cfg := filepath.Join(p.vmDir(vm.Name), ConfigFile)
	for i := range vm.Disks {
		d := &vm.Disks[i]
		f, err := p.openImage(dir, vm.Name, *d, unix.O_RDONLY)
		if err != nil {
			return err
		}
		size, err := imageSize(f, d.Format)
		f.Close()
		if err != nil {
			return p.diskErr(vm.Name, *d, err)
		}
		if d.SizeBytes == 0 {
			d.SizeBytes = size
		}
		if d.SizeBytes != size {
			return fmt.Errorf("%s: %w: disk %q: size_bytes %d but %s holds %d bytes", cfg, platform.ErrInvalidVM, d.Name, d.SizeBytes, f.Name(), size)
		}
	}
	return nil
}

func imageSize(f *os.File, format string) (int64, error) {
	if format == formatQcow2 {
		return qcow2Size(f)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// qcow2Size reads the virtual size from a qcow2 header, so that vm.json can
// be checked even though qcow2 data cannot be read yet.
func qcow2Size(f *os.File) (int64, error) {
	var hdr [32]byte
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, 32), hdr[:]); err != nil {
		return 0, fmt.Errorf("%s: read qcow2 header: %w", f.Name(), err)
	}
	if string(hdr[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("%s is not a qcow2 image", f.Name())
	}
	size := binary.BigEndian.Uint64(hdr[24:32])
	if size > 1<<62 {
		return 0, fmt.Errorf("%s: qcow2 virtual size %d is out of range", f.Name(), size)
	}
	return int64(size), nil
}

func (p *images) InstallExtension(ctx context.Context, vm string) (platform.ExtensionStatus, error) {
	if _, err := p.readConfig(vm); err != nil {
		return platform.ExtensionStatus{}, err
	}
	return platform.ExtensionStatus{}, fmt.Errorf("install extension in vm %q: %w: images vms have no guest agent; they are backed up stopped, crash-consistent", vm, platform.ErrNotSupported)
}

// Manages reports whether path is the root or lies beneath it, symlinks in
// the part of path that exists resolved (so a symlink into the root counts).
func (p *images) Manages(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return true // cannot tell: refuse rather than risk writing there
	}
	roots := []string{p.root}
	if r, err := filepath.EvalSymlinks(p.root); err == nil && r != p.root {
		roots = append(roots, r)
	}
	for _, cand := range []string{abs, resolveExisting(abs)} {
		for _, root := range roots {
			if rel, err := filepath.Rel(root, cand); err == nil && (rel == "." || filepath.IsLocal(rel)) {
				return true
			}
		}
	}
	return false
}

// resolveExisting resolves the symlinks of the longest existing prefix of
// the clean absolute path abs and appends the rest.
func resolveExisting(abs string) string {
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
