package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/platform"
)

// AbortRestore undoes what stage did to vm: a commit that began and did
// not finish is rolled back from its journal (old images renamed back, the
// old vm.json rewritten), staging files are removed, and a VM the stage
// prepared and never committed is removed whole. A folder with vm.json and
// no journal of the stage is a real VM: only staging files go.
func (p *images) AbortRestore(ctx context.Context, name string, stage platform.RestoreStage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	os.RemoveAll(filepath.Join(p.root, restoreFile(stage, "prepare")))
	dir, err := p.openVMDir(name)
	if errors.Is(err, platform.ErrVMNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	op := fmt.Sprintf("abort restore %q of vm %q", stage, name)
	jname := restoreFile(stage, "commit")
	j, err := readJournal(dir, jname)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if j != nil {
		if err := p.rollback(dir, j); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := removeAt(dir, jname); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	// Staging files lie beside the images of the VM's disks.
	dirs := []string{"."}
	if t, err := p.openTarget(name, stage); err == nil {
		for _, d := range t.vm.Disks {
			if rel := filepath.Dir(d.File); !slices.Contains(dirs, rel) {
				dirs = append(dirs, rel)
			}
		}
		t.dir.Close()
	}
	for _, rel := range dirs {
		sub, err := openBeneath(dir, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			continue // missing, or not ours to look into
		}
		err = diskfile.AbortAt(sub, string(stage))
		sub.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	marker := restoreFile(stage, "new")
	hasMarker, err := existsAt(dir, marker)
	if err != nil || !hasMarker {
		return err
	}
	if hasConfig, err := existsAt(dir, ConfigFile); err != nil {
		return err
	} else if hasConfig {
		return removeAt(dir, marker) // committed: a real VM now
	}
	// Prepared and never committed: the folder holds nothing but what the
	// stage made. Renamed away first, so the name is free at once and a
	// crash leaves only a hidden folder.
	root, err := p.openRoot()
	if err != nil {
		return err
	}
	defer root.Close()
	tomb := restoreFile(stage, "abort")
	os.RemoveAll(filepath.Join(p.root, tomb))
	if err := unix.Renameat(int(root.Fd()), name, int(root.Fd()), tomb); err != nil {
		return fmt.Errorf("%s: remove prepared vm: %w", op, err)
	}
	if err := os.RemoveAll(filepath.Join(p.root, tomb)); err != nil {
		return fmt.Errorf("%s: remove prepared vm: %w", op, err)
	}
	return diskfile.SyncDir(root)
}

// rollback puts back what an unfinished commit changed.
func (p *images) rollback(dir *os.File, j *journal) error {
	if j.Committed {
		return nil // vm.json is the new one: the restore is done
	}
	for _, jd := range slices.Backward(j.Disks) {
		parent, err := openBeneath(dir, filepath.Dir(jd.File), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		err = func() error {
			defer parent.Close()
			base := filepath.Base(jd.File)
			staged, err := existsAt(parent, diskfile.StagingName(base, string(j.Stage)))
			if err != nil {
				return err
			}
			target, err := existsAt(parent, base)
			if err != nil {
				return err
			}
			kept := false
			if jd.Kept != "" {
				if kept, err = existsAt(parent, filepath.Base(jd.Kept)); err != nil {
					return err
				}
			}
			switch {
			case kept:
				// The old image goes back over the new one, if that is
				// in place already.
				if err := unix.Renameat(int(parent.Fd()), filepath.Base(jd.Kept), int(parent.Fd()), base); err != nil {
					return fmt.Errorf("disk %q: put the old image back: %w", jd.Name, err)
				}
			case jd.Kept == "" && target && !staged && j.Old != nil:
				// The VM had no image here before the restore.
				if err := removeAt(parent, base); err != nil {
					return err
				}
			}
			return diskfile.SyncDir(parent)
		}()
		if err != nil {
			return err
		}
	}
	if j.Old != nil {
		return writeConfig(dir, *j.Old)
	}
	return removeAt(dir, ConfigFile) // a new VM: it was never committed
}
