package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/platform"
)

// instantPrefix names a new VM's folder while NewVMFromKept builds it
// (<inventory>/.vmvault-instant-<h>.tmp), and the marker it leaves in the
// VM folder (.vmvault-instant-<h>) so that a retry of the same stage knows
// the VM is its own.
const instantPrefix = ".vmvault-instant-"

// NewVMFromKept builds the new VM in a hidden folder of the inventory, each
// disk a qcow2 overlay whose backing file is the kept image (a relative
// path, ../.vmvault-kept/<vm>/<id>/<disk>.raw, so the inventory may move),
// temp disks empty raw images, vm.json and qemu.json beside them; then one
// rename that refuses to replace puts the folder in place: the VM appears
// whole or not at all, and a crash leaves only the hidden folder, which the
// next attempt of the stage removes.
func (p *qemuPlatform) NewVMFromKept(ctx context.Context, vm platform.VM, k platform.KeptSnapshot, stage platform.RestoreStage) (platform.VM, error) {
	op := fmt.Sprintf("new vm %q from kept snapshot %s of vm %s", vm.Name, k.ID, k.VM)
	dir, err := p.keptDir(k.VM, k.ID)
	if err != nil {
		return platform.VM{}, fmt.Errorf("%s: %w", op, err)
	}
	// The files' own record, not the payload's, says what is kept.
	onDisk, err := readKept(dir)
	if err != nil {
		return platform.VM{}, fmt.Errorf("%s: %s: %v: %w", op, dir, err, platform.ErrKeptGone)
	}
	if now := time.Now(); now.After(onDisk.Expires) {
		return platform.VM{}, fmt.Errorf("%s: it expired at %s: %w", op, onDisk.Expires.Format(time.RFC3339), platform.ErrKeptGone)
	}
	if !validKeptName.MatchString(vm.Name) {
		return platform.VM{}, fmt.Errorf("%s: %w: bad vm name", op, platform.ErrInvalidVM)
	}
	h := snapHash("instant", string(stage))
	final := p.vmDir(vm.Name)
	if _, err := os.Lstat(final); err == nil {
		if _, err := os.Lstat(filepath.Join(final, instantPrefix+h)); err == nil {
			return p.DescribeVM(ctx, vm.Name) // this stage made it: a retry
		}
		return platform.VM{}, fmt.Errorf("%s: %s exists: %w", op, final, platform.ErrVMExists)
	}
	removeStale(filepath.Join(p.root, instantPrefix+"*.tmp"))
	tmp := filepath.Join(p.root, instantPrefix+h+".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return platform.VM{}, err
	}
	if err := p.buildInstant(ctx, tmp, h, vm, onDisk); err != nil {
		os.RemoveAll(tmp)
		return platform.VM{}, fmt.Errorf("%s: %w", op, err)
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// No refusing rename on this file system: claim the name with
		// mkdir-free rename after a check (a narrow race, like images').
		if _, lerr := os.Lstat(final); lerr == nil {
			err = unix.EEXIST
		} else {
			err = os.Rename(tmp, final)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return platform.VM{}, fmt.Errorf("%s: %s exists: %w", op, final, platform.ErrVMExists)
		}
		return platform.VM{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := syncDir(p.root); err != nil {
		return platform.VM{}, fmt.Errorf("%s: %w", op, err)
	}
	return p.DescribeVM(ctx, vm.Name)
}

// buildInstant writes the new VM's files into tmp.
func (p *qemuPlatform) buildInstant(ctx context.Context, tmp, h string, vm platform.VM, k platform.KeptSnapshot) error {
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	vm.Power, vm.Extension = platform.PowerStopped, platform.ExtensionStatus{}
	vm.Disks = append([]platform.Disk(nil), vm.Disks...)
	s := Settings{QMPSocket: "qmp.sock", AgentSocket: "qga.sock", Nodes: map[string]string{}}
	for i := range vm.Disks {
		d := &vm.Disks[i]
		if err := diskfile.CheckName(d.Name); err != nil || !validKeptName.MatchString(d.Name) {
			return fmt.Errorf("disk %q: bad name: %w", d.Name, platform.ErrInvalidVM)
		}
		s.Nodes[d.Name] = "disk-" + d.Name
		if d.Role == platform.DiskTemp {
			// Scratch: comes back empty, as from the vault.
			d.Format, d.File = "raw", d.Name+".raw"
			f, err := os.OpenFile(filepath.Join(tmp, d.File), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			err = f.Truncate(d.SizeBytes)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			continue
		}
		size, ok := k.Sizes[d.Name]
		kept := filepath.Join(p.root, keptFolder, k.VM, k.ID, d.Name+".raw")
		if st, err := os.Lstat(kept); !ok || err != nil || !st.Mode().IsRegular() || st.Size() != size {
			return fmt.Errorf("disk %q: kept image %s is missing or not %d bytes: %w", d.Name, kept, size, platform.ErrKeptGone)
		}
		d.Format, d.File, d.SizeBytes = "qcow2", d.Name+".qcow2", size
		backing := filepath.Join("..", keptFolder, k.VM, k.ID, d.Name+".raw")
		if _, msg, err := runTool(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw",
			filepath.Join(tmp, d.File), fmt.Sprint(size)); err != nil {
			return fmt.Errorf("disk %q: qemu-img create overlay: %v: %s", d.Name, err, firstLine(msg))
		}
		if err := syncFile(filepath.Join(tmp, d.File)); err != nil {
			return err
		}
	}
	marker := filepath.Join(tmp, instantPrefix+h)
	if err := os.WriteFile(marker, []byte(k.VM+"/"+k.ID+"\n"), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(tmp, SettingsFile), s); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(tmp, "vm.json"), vm); err != nil {
		return err
	}
	return syncDir(tmp)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
