package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/imagelock"
	"github.com/vmvault/vmvault/infra/platform"
)

// journal is CommitRestore's plan, written to the VM folder before the
// first rename. Each step it lists can be told done from the files that
// exist, so a retry after a crash redoes only what is left, and
// AbortRestore can put the old images and vm.json back.
type journal struct {
	Stage platform.RestoreStage `json:"stage"`
	// Committed: vm.json holds New; only removing kept images (when
	// discarding) and the restore files is left.
	Committed bool          `json:"committed"`
	Old       *platform.VM  `json:"old,omitempty"` // nil for a new VM
	New       platform.VM   `json:"new"`
	Disks     []journalDisk `json:"disks"`
}

type journalDisk struct {
	Name string `json:"name"`
	File string `json:"file"` // relative to the VM folder
	// Kept is where the replaced image goes, relative to the VM folder;
	// empty when there was no image.
	Kept string `json:"kept,omitempty"`
}

// keptSuffix plus a UTC time is appended to a replaced image's name.
const keptSuffix = ".replaced-"

// CommitRestore puts the staged disks of vm in place and then writes
// vm.json. Every image it replaces and every staged file is locked as QEMU
// locks images it writes before anything changes; the plan is journaled;
// each disk's image is renamed to its kept name and the staged file to the
// image's name, each directory synced. vm.json comes last.
func (p *images) CommitRestore(ctx context.Context, name string, stage platform.RestoreStage, opt platform.CommitOptions) (platform.CommitResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, err := p.openTarget(name, stage)
	if err != nil {
		return platform.CommitResult{}, err
	}
	defer t.dir.Close()
	op := fmt.Sprintf("commit restore %q of vm %q", stage, name)
	if err := t.checkStopped(op); err != nil {
		return platform.CommitResult{}, err
	}
	jname := restoreFile(stage, "commit")
	j, err := readJournal(t.dir, jname)
	if err != nil {
		return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
	}
	fresh := j == nil
	if fresh {
		if j, err = p.planCommit(t, stage, opt); err != nil {
			return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
		}
		if j == nil { // nothing staged, nothing asked for: nothing to do
			return platform.CommitResult{VM: t.vm}, nil
		}
	}
	release, err := p.lockCommit(t, j, stage)
	if err != nil {
		return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
	}
	defer release()
	if fresh {
		if err := writeJournal(t.dir, jname, j); err != nil {
			return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := p.step("journal"); err != nil {
		return platform.CommitResult{}, err
	}
	if !j.Committed {
		for _, jd := range j.Disks {
			if err := p.commitDisk(t, jd, stage); err != nil {
				return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
			}
			if err := p.step("disk " + jd.Name); err != nil {
				return platform.CommitResult{}, err
			}
		}
		if err := writeConfig(t.dir, j.New); err != nil {
			return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
		}
		if err := p.step("config"); err != nil {
			return platform.CommitResult{}, err
		}
		j.Committed = true
		if err := writeJournal(t.dir, jname, j); err != nil {
			return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
		}
	}
	res := platform.CommitResult{VM: j.New}
	for _, jd := range j.Disks {
		if jd.Kept == "" {
			continue
		}
		// A temp disk is scratch: what it held is never kept.
		if d, _ := findDisk(j.New, jd.Name); opt.DiscardReplaced || d.Role == platform.DiskTemp {
			if err := p.removeKept(t.dir, jd.Kept); err != nil {
				return platform.CommitResult{}, fmt.Errorf("%s: discard replaced image: %w", op, err)
			}
			continue
		}
		if res.Kept == nil {
			res.Kept = map[string]string{}
		}
		res.Kept[jd.Name] = filepath.Join(p.vmDir(name), jd.Kept)
	}
	err = errors.Join(removeAt(t.dir, restoreFile(stage, "new")), removeAt(t.dir, jname))
	if err == nil {
		err = diskfile.SyncDir(t.dir)
	}
	if err != nil {
		return platform.CommitResult{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// planCommit finds the staged disks and chooses the kept names. It returns
// nil when nothing is staged and opt asks for no disk.
func (p *images) planCommit(t *restoreTarget, stage platform.RestoreStage, opt platform.CommitOptions) (*journal, error) {
	for d := range opt.Sizes {
		if _, ok := findDisk(t.vm, d); !ok {
			return nil, fmt.Errorf("%w: no disk %q to commit", platform.ErrInvalidVM, d)
		}
	}
	j := &journal{Stage: stage, New: t.vm}
	j.New.Disks = slices.Clone(t.vm.Disks)
	now := time.Now().UTC().Format("20060102T150405Z")
	for i, d := range t.vm.Disks {
		want, asked := opt.Sizes[d.Name]
		parent, err := openBeneath(t.dir, filepath.Dir(d.File), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil && !isNotExist(err) {
			return nil, p.diskErr(t.vm.Name, d, err)
		}
		var st unix.Stat_t
		base := filepath.Base(d.File)
		if err == nil {
			err = unix.Fstatat(int(parent.Fd()), diskfile.StagingName(base, string(stage)), &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			if parent != nil {
				parent.Close()
			}
			// Not part of this restore; or, with vm.json already at the
			// size asked, committed by an earlier attempt whose journal
			// is gone: a retry after success succeeds.
			if isNotExist(err) && !t.prepared && (!asked || d.SizeBytes == want) {
				continue
			}
			return nil, fmt.Errorf("disk %q was not staged: %w", d.Name, err)
		}
		kept, err := func() (string, error) {
			defer parent.Close()
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				return "", p.diskErr(t.vm.Name, d, errors.New("staged file is not a regular file"))
			}
			if asked && want != st.Size {
				return "", fmt.Errorf("disk %q: %d bytes staged, %d to commit", d.Name, st.Size, want)
			}
			if err := checkRegularAt(parent, base); isNotExist(err) {
				return "", nil // no image to replace
			} else if err != nil {
				return "", p.diskErr(t.vm.Name, d, err)
			}
			for n := 1; ; n++ {
				k := base + keptSuffix + now
				if n > 1 {
					k += fmt.Sprintf("-%d", n)
				}
				if ok, err := existsAt(parent, k); err != nil {
					return "", err
				} else if !ok {
					return filepath.Join(filepath.Dir(d.File), k), nil
				}
			}
		}()
		if err != nil {
			return nil, err
		}
		j.New.Disks[i].SizeBytes = st.Size
		j.Disks = append(j.Disks, journalDisk{Name: d.Name, File: d.File, Kept: kept})
	}
	if len(j.Disks) == 0 {
		return nil, nil
	}
	if !t.prepared {
		old := t.vm
		j.Old = &old
	}
	return j, nil
}

// lockCommit takes the image write lock on every image the commit replaces
// and every staged file (so the new image is locked from before it appears
// under its name), and syncs the staged files. release closes them all.
func (p *images) lockCommit(t *restoreTarget, j *journal, stage platform.RestoreStage) (release func(), err error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	for _, jd := range j.Disks {
		d := platform.Disk{Name: jd.Name, File: jd.File}
		base := filepath.Base(jd.File)
		staged := filepath.Join(filepath.Dir(jd.File), diskfile.StagingName(base, string(stage)))
		for _, rel := range []string{jd.File, staged} {
			f, err := openRegular(t.dir, rel, unix.O_RDWR, 0)
			if isNotExist(err) {
				continue // renamed already, or no image before
			}
			if err != nil {
				return nil, p.diskErr(t.vm.Name, d, err)
			}
			files = append(files, f)
			if err := imagelock.LockFile(f, f.Name()); err != nil {
				return nil, fmt.Errorf("vm %q disk %q: %w", t.vm.Name, jd.Name, err)
			}
			if rel == staged {
				if err := f.Sync(); err != nil {
					return nil, fmt.Errorf("vm %q disk %q: sync staged image: %w", t.vm.Name, jd.Name, err)
				}
			}
		}
	}
	return closeAll, nil
}

// commitDisk moves the image of one disk to its kept name and the staged
// file to the image's name; what is done already is skipped.
func (p *images) commitDisk(t *restoreTarget, jd journalDisk, stage platform.RestoreStage) error {
	parent, err := openBeneath(t.dir, filepath.Dir(jd.File), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return p.diskErr(t.vm.Name, platform.Disk{Name: jd.Name, File: jd.File}, err)
	}
	defer parent.Close()
	base := filepath.Base(jd.File)
	sname := diskfile.StagingName(base, string(stage))
	staged, err := existsAt(parent, sname)
	if err != nil {
		return err
	}
	target, err := existsAt(parent, base)
	if err != nil {
		return err
	}
	if !staged {
		if !target {
			return fmt.Errorf("disk %q: neither the staged image nor %s is there", jd.Name, filepath.Join(parent.Name(), base))
		}
		return nil // done by an earlier attempt
	}
	if target {
		if jd.Kept == "" {
			return fmt.Errorf("disk %q: %s appeared during the commit", jd.Name, filepath.Join(parent.Name(), base))
		}
		if err := diskfile.RenameNoReplace(parent, base, filepath.Base(jd.Kept)); err != nil {
			return fmt.Errorf("disk %q: keep the replaced image: %w", jd.Name, err)
		}
		if err := p.step("kept " + jd.Name); err != nil {
			return err
		}
	}
	if err := diskfile.RenameNoReplace(parent, sname, base); err != nil {
		return fmt.Errorf("disk %q: put the restored image in place: %w", jd.Name, err)
	}
	return diskfile.SyncDir(parent)
}

func (p *images) removeKept(dir *os.File, kept string) error {
	parent, err := openBeneath(dir, filepath.Dir(kept), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer parent.Close()
	if err := removeAt(parent, filepath.Base(kept)); err != nil {
		return err
	}
	return diskfile.SyncDir(parent)
}

func readJournal(dir *os.File, name string) (*journal, error) {
	data, err := readFileAt(dir, name)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read commit journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("commit journal %s: %w", filepath.Join(dir.Name(), name), err)
	}
	for _, jd := range j.Disks {
		for _, rel := range []string{jd.File, jd.Kept} {
			if rel != "" && !filepath.IsLocal(rel) {
				return nil, fmt.Errorf("commit journal %s: bad path %q", filepath.Join(dir.Name(), name), rel)
			}
		}
	}
	return &j, nil
}

func writeJournal(dir *os.File, name string, j *journal) error {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAt(dir, name, append(data, '\n'))
}
