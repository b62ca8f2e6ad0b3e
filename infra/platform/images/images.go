package images

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"

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
	// mu serializes rewrites of vm.json by this process (parallel disk
	// restores of one VM may each update a disk size).
	mu sync.Mutex
}

var _ platform.Platform = (*images)(nil)

// New returns the images platform rooted at root, creating root if needed.
func New(root string) (platform.Platform, error) {
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

func (p *images) Name() string { return "images" }

func (p *images) vmDir(name string) string { return filepath.Join(p.root, name) }

// ListVMs returns every VM under the root, sorted by name. Folders without
// vm.json are not VMs and are skipped. If some vm.json files are invalid,
// ListVMs still returns the valid VMs, together with an error wrapping
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
		if _, err := os.Stat(filepath.Join(p.root, e.Name(), ConfigFile)); errors.Is(err, os.ErrNotExist) {
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
	vm, err := p.readConfig(name)
	if err != nil {
		return platform.VM{}, err
	}
	if err := p.checkFiles(&vm); err != nil {
		return platform.VM{}, err
	}
	return vm, nil
}

func (p *images) notFound(name string) error {
	return fmt.Errorf("vm %q not found in %s: %w", name, p.root, platform.ErrVMNotFound)
}

// readConfig reads and validates vm.json without looking at the images.
func (p *images) readConfig(name string) (platform.VM, error) {
	if !validName.MatchString(name) {
		return platform.VM{}, p.notFound(name)
	}
	path := filepath.Join(p.vmDir(name), ConfigFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return platform.VM{}, p.notFound(name)
	}
	if err != nil {
		return platform.VM{}, fmt.Errorf("read vm %q: %w", name, err)
	}
	// Unknown fields are allowed so that a newer vmvault's vm.json reads.
	var vm platform.VM
	if err := json.Unmarshal(data, &vm); err != nil {
		return platform.VM{}, fmt.Errorf("%s: %w: %v", path, platform.ErrInvalidVM, err)
	}
	if vm.Name == "" {
		vm.Name = name
	}
	if vm.Name != name {
		return platform.VM{}, fmt.Errorf("%s: %w: name %q differs from the folder name %q", path, platform.ErrInvalidVM, vm.Name, name)
	}
	if vm.Power == "" {
		vm.Power = platform.PowerStopped
	}
	if err := normalize(&vm); err != nil {
		return platform.VM{}, fmt.Errorf("%s: %w", path, err)
	}
	return vm, nil
}

// normalize validates a VM definition and fills in defaults (file names,
// format). Errors wrap platform.ErrInvalidVM or, for formats this platform
// cannot handle yet, platform.ErrNotSupported.
func normalize(vm *platform.VM) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", platform.ErrInvalidVM, fmt.Sprintf(format, args...))
	}
	if !validName.MatchString(vm.Name) {
		return invalid("bad vm name %q (letters, digits, '.', '_', '-'; not starting with a dot)", vm.Name)
	}
	switch vm.OS {
	case platform.OSLinux, platform.OSWindows:
	default:
		return invalid("os %q is not %q or %q", vm.OS, platform.OSLinux, platform.OSWindows)
	}
	if vm.CPUs < 0 || vm.MemoryMB < 0 {
		return invalid("negative cpu (%d) or memory_mb (%d)", vm.CPUs, vm.MemoryMB)
	}
	switch vm.Power {
	case platform.PowerRunning, platform.PowerStopped:
	default:
		return invalid("power_state %q is not %q or %q", vm.Power, platform.PowerRunning, platform.PowerStopped)
	}
	var osDisks int
	names := map[string]bool{}
	files := map[string]string{}
	luns := map[int]string{}
	for i := range vm.Disks {
		d := &vm.Disks[i]
		if !validName.MatchString(d.Name) {
			return invalid("disk %d: bad disk name %q", i, d.Name)
		}
		if names[d.Name] {
			return invalid("two disks named %q", d.Name)
		}
		names[d.Name] = true
		switch d.Role {
		case platform.DiskOS:
			osDisks++
		case platform.DiskData:
			if d.LUN < 0 || d.LUN > maxLUN {
				return invalid("disk %q: lun %d is outside 0..%d", d.Name, d.LUN, maxLUN)
			}
			if other, ok := luns[d.LUN]; ok {
				return invalid("disks %q and %q both use lun %d", other, d.Name, d.LUN)
			}
			luns[d.LUN] = d.Name
		case platform.DiskTemp:
		default:
			return invalid("disk %q: role %q is not os, data or temp", d.Name, d.Role)
		}
		if d.SizeBytes < 0 {
			return invalid("disk %q: negative size_bytes %d", d.Name, d.SizeBytes)
		}
		switch d.Format {
		case "":
			d.Format = formatRaw
		case formatRaw, formatQcow2:
		default:
			return invalid("disk %q: unknown format %q (raw or qcow2)", d.Name, d.Format)
		}
		if d.File == "" {
			d.File = d.Name + "." + d.Format
		}
		clean := filepath.Clean(d.File)
		if !filepath.IsLocal(clean) || clean == ConfigFile {
			return invalid("disk %q: file %q must be a path inside the vm folder", d.Name, d.File)
		}
		d.File = clean
		if other, ok := files[clean]; ok {
			return invalid("disks %q and %q share the file %q", other, d.Name, clean)
		}
		files[clean] = d.Name
	}
	if osDisks != 1 {
		return invalid("%d os disks, want exactly one", osDisks)
	}
	return nil
}

// checkFiles checks that every image exists and has the size vm.json says,
// filling in size_bytes where it is 0.
func (p *images) checkFiles(vm *platform.VM) error {
	dir := p.vmDir(vm.Name)
	cfg := filepath.Join(dir, ConfigFile)
	for i := range vm.Disks {
		d := &vm.Disks[i]
		path := filepath.Join(dir, d.File)
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%s: %w: disk %q: %v", cfg, platform.ErrInvalidVM, d.Name, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s: %w: disk %q: %s is not a regular file", cfg, platform.ErrInvalidVM, d.Name, path)
		}
		size := st.Size()
		if d.Format == formatQcow2 {
			if size, err = qcow2Size(path); err != nil {
				return fmt.Errorf("%s: %w: disk %q: %v", cfg, platform.ErrInvalidVM, d.Name, err)
			}
		}
		if d.SizeBytes == 0 {
			d.SizeBytes = size
		}
		if d.SizeBytes != size {
			return fmt.Errorf("%s: %w: disk %q: size_bytes %d but %s holds %d bytes", cfg, platform.ErrInvalidVM, d.Name, d.SizeBytes, path, size)
		}
	}
	return nil
}

// qcow2Size reads the virtual size from a qcow2 header, so that vm.json can
// be checked even though qcow2 data cannot be read yet.
func qcow2Size(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var hdr [32]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, fmt.Errorf("%s: read qcow2 header: %w", path, err)
	}
	if string(hdr[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("%s is not a qcow2 image", path)
	}
	size := binary.BigEndian.Uint64(hdr[24:32])
	if size > 1<<62 {
		return 0, fmt.Errorf("%s: qcow2 virtual size %d is out of range", path, size)
	}
	return int64(size), nil
}

func (p *images) InstallExtension(ctx context.Context, vm string) (platform.ExtensionStatus, error) {
	if _, err := p.readConfig(vm); err != nil {
		return platform.ExtensionStatus{}, err
	}
	return platform.ExtensionStatus{}, fmt.Errorf("install extension in vm %q: %w: images vms have no guest agent; they are backed up stopped, crash-consistent", vm, platform.ErrNotSupported)
}
