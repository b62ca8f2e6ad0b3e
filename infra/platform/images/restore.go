package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/platform"
)

// The restore files, all hidden so that they are never a VM or a disk, and
// named by the stage's hash (stage ids may hold any character):
//
//	<root>/<vm>/.restore-<h>.new      PrepareNewVM's marker: the VM to be
//	<root>/<vm>/.restore-<h>.commit   CommitRestore's journal
//	<root>/.restore-<h>.prepare       a new VM folder before it is claimed
//	<root>/.restore-<h>.abort         an aborted new VM folder being removed
//
// Staging files are diskfile's: .<file>.restore-<h> beside each image.
func restoreFile(stage platform.RestoreStage, kind string) string {
	return ".restore-" + diskfile.StageHash(string(stage)) + "." + kind
}

// restoreTarget is the VM a stage restores into: an existing VM (vm.json)
// or one PrepareNewVM reserved for the stage (only its marker).
type restoreTarget struct {
	dir      *os.File
	vm       platform.VM
	prepared bool
}

func (p *images) openTarget(name string, stage platform.RestoreStage) (*restoreTarget, error) {
	dir, err := p.openVMDir(name)
	if err != nil {
		return nil, err
	}
	vm, err := p.readConfigIn(dir, name)
	if err == nil {
		return &restoreTarget{dir: dir, vm: vm}, nil
	}
	if !errors.Is(err, platform.ErrVMNotFound) {
		dir.Close()
		return nil, err
	}
	data, merr := readFileAt(dir, restoreFile(stage, "new"))
	if merr == nil {
		vm, merr = parseConfig(data, name)
		if merr == nil {
			return &restoreTarget{dir: dir, vm: vm, prepared: true}, nil
		}
	}
	dir.Close()
	if isNotExist(merr) {
		return nil, err // not a VM, nor prepared by this stage
	}
	return nil, fmt.Errorf("vm %q: restore marker of stage %q: %w", name, stage, merr)
}

func (t *restoreTarget) checkStopped(op string) error {
	if !t.prepared && t.vm.Power != platform.PowerStopped {
		return fmt.Errorf("%s: images platform cannot restore disks of running vm %q; stop it first: %w", op, t.vm.Name, platform.ErrVMRunning)
	}
	return nil
}

// PrepareNewVM claims <root>/<name>/ for stage: the folder appears at once
// (renamed into place, or made with mkdir where renames cannot refuse to
// replace) holding only the stage's marker with the VM definition; vm.json
// is written by CommitRestore.
func (p *images) PrepareNewVM(ctx context.Context, vm platform.VM, stage platform.RestoreStage) (platform.VM, error) {
	vm.Power = platform.PowerStopped
	vm.Extension = platform.ExtensionStatus{}
	vm.Disks = append([]platform.Disk(nil), vm.Disks...)
	if err := normalize(&vm); err != nil {
		return platform.VM{}, fmt.Errorf("prepare vm %q: %w", vm.Name, err)
	}
	for _, d := range vm.Disks {
		if d.Format != formatRaw {
			return platform.VM{}, fmt.Errorf("prepare vm %q: disk %q: format %s: %w (images platform creates raw images only)", vm.Name, d.Name, d.Format, platform.ErrNotSupported)
		}
	}
	data, err := json.MarshalIndent(vm, "", "  ")
	if err != nil {
		return platform.VM{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	root, err := p.openRoot()
	if err != nil {
		return platform.VM{}, err
	}
	defer root.Close()
	marker := restoreFile(stage, "new")
	tmp := restoreFile(stage, "prepare")
	os.RemoveAll(filepath.Join(p.root, tmp)) // a crashed attempt's
	claimed, err := func() (bool, error) {
		if err := unix.Mkdirat(int(root.Fd()), tmp, 0o755); err != nil {
			return false, err
		}
		defer os.RemoveAll(filepath.Join(p.root, tmp)) // gone after the rename
		tdir, err := openBeneath(root, tmp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return false, err
		}
		err = writeFileAt(tdir, marker, data)
		tdir.Close()
		if err != nil {
			return false, err
		}
		return renameDirNoReplace(root, tmp, vm.Name)
	}()
	switch {
	case errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY):
		return p.preparedBefore(vm.Name, stage)
	case err != nil:
		return platform.VM{}, fmt.Errorf("prepare vm %q: %w", vm.Name, err)
	case !claimed:
		// No rename that refuses to replace here: mkdir claims the name.
		if err := unix.Mkdirat(int(root.Fd()), vm.Name, 0o755); errors.Is(err, unix.EEXIST) {
			return p.preparedBefore(vm.Name, stage)
		} else if err != nil {
			return platform.VM{}, fmt.Errorf("prepare vm %q: %w", vm.Name, err)
		}
		dir, err := openBeneath(root, vm.Name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return platform.VM{}, fmt.Errorf("prepare vm %q: %w", vm.Name, err)
		}
		err = writeFileAt(dir, marker, data)
		dir.Close()
		if err != nil {
			return platform.VM{}, fmt.Errorf("prepare vm %q: %w", vm.Name, err)
		}
	}
	if err := root.Sync(); err != nil {
		return platform.VM{}, fmt.Errorf("prepare vm %q: %w", vm.Name, err)
	}
	return vm, nil
}

// preparedBefore is PrepareNewVM's answer when the name is taken: the VM an
// earlier attempt of the same stage prepared, else ErrVMExists.
func (p *images) preparedBefore(name string, stage platform.RestoreStage) (platform.VM, error) {
	t, err := p.openTarget(name, stage)
	if err == nil {
		t.dir.Close()
		if t.prepared {
			return t.vm, nil
		}
	}
	return platform.VM{}, fmt.Errorf("prepare vm %q: %s exists (a vm, another restore's, or not a vm): %w", name, p.vmDir(name), platform.ErrVMExists)
}

// StageDisk opens the staging file of disk beside its image (diskfile.Stage):
// the image itself is not opened. Folders of the image's path are created
// beneath the VM folder if missing; a symlink anywhere on the path, or an
// image that is not a regular file, is refused.
func (p *images) StageDisk(ctx context.Context, name, disk string, size int64, stage platform.RestoreStage) (platform.StagedDisk, error) {
	op := fmt.Sprintf("stage disk %q of vm %q", disk, name)
	if size < 0 {
		return nil, fmt.Errorf("%s: %w: negative size %d", op, platform.ErrInvalidVM, size)
	}
	t, err := p.openTarget(name, stage)
	if err != nil {
		return nil, err
	}
	defer t.dir.Close()
	if err := t.checkStopped(op); err != nil {
		return nil, err
	}
	if _, err := readFileAt(t.dir, restoreFile(stage, "commit")); err == nil {
		return nil, fmt.Errorf("%s: the commit of restore %q has begun; retry CommitRestore", op, stage)
	}
	d, ok := findDisk(t.vm, disk)
	if !ok {
		return nil, fmt.Errorf("%s: no such disk: %w", op, platform.ErrInvalidVM)
	}
	if d.Format != formatRaw {
		return nil, fmt.Errorf("%s: format %s: %w (images platform writes raw images only)", op, d.Format, platform.ErrNotSupported)
	}
	parent, err := mkdirBeneath(t.dir, filepath.Dir(d.File))
	if err != nil {
		return nil, p.diskErr(name, d, err)
	}
	defer parent.Close()
	base := filepath.Base(d.File)
	if err := checkRegularAt(parent, base); err != nil && !isNotExist(err) {
		return nil, p.diskErr(name, d, err)
	}
	s, err := diskfile.StageAt(parent, base, size, string(stage))
	if errors.Is(err, diskfile.ErrSymlink) {
		return nil, p.diskErr(name, d, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return s, nil
}

var _ platform.StagedDisk = (*diskfile.Staged)(nil)

func findDisk(vm platform.VM, name string) (platform.Disk, bool) {
	for _, d := range vm.Disks {
		if d.Name == name {
			return d, true
		}
	}
	return platform.Disk{}, false
}

// checkRegularAt checks, without following a symlink, that name in dir is
// a regular file; a missing one gives an error wrapping os.ErrNotExist.
func checkRegularAt(dir *os.File, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "stat", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return nil
	case unix.S_IFLNK:
		return fmt.Errorf("%s: %w", filepath.Join(dir.Name(), name), errEscape)
	}
	return fmt.Errorf("%s is not a regular file", filepath.Join(dir.Name(), name))
}

func existsAt(dir *os.File, name string) (bool, error) {
	err := unix.Fstatat(int(dir.Fd()), name, new(unix.Stat_t), unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "stat", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return true, nil
}

func removeAt(dir *os.File, name string) error {
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	return nil
}

// step marks a named step of a commit: a fault point, and the tests' hook.
func (p *images) step(name string) error {
	switch {
	case name == "journal":
		faultpoint.Hit("restore.journal")
	case strings.HasPrefix(name, "disk "):
		faultpoint.Hit("restore.commit")
	case name == "config":
		faultpoint.Hit("restore.config")
	}
	if p.hook != nil {
		return p.hook(name)
	}
	return nil
}
