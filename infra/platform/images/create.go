package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/imagelock"
)

// CreateVM creates <root>/<name>/ with a sparse, all-zero raw image per disk
// and vm.json, written last: a folder without vm.json is not a VM yet. The
// new VM is stopped and has no extension.
func (p *images) CreateVM(ctx context.Context, vm platform.VM) (platform.VM, error) {
	vm.Power = platform.PowerStopped
	vm.Extension = platform.ExtensionStatus{}
	vm.Disks = append([]platform.Disk(nil), vm.Disks...)
	if err := normalize(&vm); err != nil {
		return platform.VM{}, fmt.Errorf("create vm %q: %w", vm.Name, err)
	}
	for _, d := range vm.Disks {
		if d.Format != formatRaw {
			return platform.VM{}, fmt.Errorf("create vm %q: disk %q: format %s: %w (images platform creates raw images only)", vm.Name, d.Name, d.Format, platform.ErrNotSupported)
		}
	}
	dir := p.vmDir(vm.Name)
	// Mkdir claims the name atomically against a concurrent CreateVM.
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return platform.VM{}, fmt.Errorf("create vm %q: %s exists: %w", vm.Name, dir, platform.ErrVMExists)
		}
		return platform.VM{}, fmt.Errorf("create vm %q: %w", vm.Name, err)
	}
	if err := p.populate(dir, vm); err != nil {
		os.RemoveAll(dir) // ours: Mkdir above succeeded
		return platform.VM{}, fmt.Errorf("create vm %q: %w", vm.Name, err)
	}
	return vm, nil
}

func (p *images) populate(dir string, vm platform.VM) error {
	for _, d := range vm.Disks {
		path := filepath.Join(dir, d.File)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		w, err := diskfile.Create(path, d.SizeBytes)
		if err != nil {
			return fmt.Errorf("disk %q: %w", d.Name, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("disk %q: %w", d.Name, err)
		}
	}
	return writeConfig(dir, vm)
}

// writeConfig replaces dir/vm.json atomically: a crash leaves the old or
// the new file, never a torn one.
func writeConfig(dir string, vm platform.VM) error {
	data, err := json.MarshalIndent(vm, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(dir, "."+ConfigFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", ConfigFile, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", ConfigFile, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", ConfigFile, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", ConfigFile, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", ConfigFile, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, ConfigFile)); err != nil {
		return fmt.Errorf("write %s: %w", ConfigFile, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// OpenDiskWriter empties a disk of a stopped VM to size bytes and returns a
// writer for its new content. While the writer is open the image carries a
// QEMU-style write lock, so backups of the disk and a QEMU that would start
// the VM are refused. If size differs from vm.json, vm.json is updated. The
// image file need not exist (a restore may repair a VM that lost it).
func (p *images) OpenDiskWriter(ctx context.Context, name string, disk string, size int64) (platform.DiskWriter, error) {
	if size < 0 {
		return nil, fmt.Errorf("open disk %q of vm %q for writing: negative size %d", disk, name, size)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	vm, err := p.readConfig(name)
	if err != nil {
		return nil, err
	}
	if vm.Power != platform.PowerStopped {
		return nil, fmt.Errorf("images platform cannot write disk %q of running vm %q; stop it first: %w", disk, name, platform.ErrVMRunning)
	}
	i := -1
	for j, d := range vm.Disks {
		if d.Name == disk {
			i = j
		}
	}
	if i < 0 {
		return nil, fmt.Errorf("open disk for writing: vm %q has no disk %q: %w", name, disk, platform.ErrInvalidVM)
	}
	d := vm.Disks[i]
	if d.Format != formatRaw {
		return nil, fmt.Errorf("open disk %q of vm %q for writing: format %s: %w (images platform writes raw images only)", disk, name, d.Format, platform.ErrNotSupported)
	}
	path := filepath.Join(p.vmDir(name), d.File)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	// The lock needs the file; creating an empty one changes nothing that
	// a reader could see as data.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open disk %q of vm %q for writing: %w", disk, name, err)
	}
	f.Close()
	release, err := imagelock.HoldWriteLock(path)
	if err != nil {
		return nil, fmt.Errorf("vm %q disk %q: %w", name, disk, err)
	}
	w, err := diskfile.Create(path, size)
	if err != nil {
		release()
		return nil, fmt.Errorf("vm %q disk %q: %w", name, disk, err)
	}
	if d.SizeBytes != size {
		vm.Disks[i].SizeBytes = size
		if err := writeConfig(p.vmDir(name), vm); err != nil {
			w.Close()
			release()
			return nil, fmt.Errorf("vm %q disk %q: resize to %d: %w", name, disk, size, err)
		}
	}
	return &lockedWriter{DiskWriter: w, release: release}, nil
}

// lockedWriter holds the image's write lock until its data is durable.
type lockedWriter struct {
	platform.DiskWriter
	release func() error
}

func (w *lockedWriter) Close() error {
	err := w.DiskWriter.Close()
	if w.release != nil {
		err = errors.Join(err, w.release())
		w.release = nil
	}
	return err
}
