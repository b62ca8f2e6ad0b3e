package diskfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/faultpoint"
)

// journalName is the name CommitAll's journal takes in the staging-name
// space: hidden, and removed by Abort with the stage's staging files.
const journalName = "commit"

// CommitAll commits the staging files of every name for stage (see
// Commit) and returns the targets' paths. Before the first rename it
// writes the journal dir/.commit.restore-<h> naming them, and removes it
// after the last, so a retry after a crash in between finishes the commit:
// with the journal there, a name whose staging file is gone and whose
// target exists was committed by the earlier attempt. Without the journal
// a missing staging file is ErrNotStaged, as for Commit, and nothing is
// renamed. A commit that fails otherwise leaves the journal to the retry,
// or to Abort, which removes it with the stage's staging files.
func CommitAll(dir string, names []string, stage string, force bool) ([]string, error) {
	d, err := OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("commit in %s: %w", dir, err)
	}
	defer d.Close()
	jname := StagingName(journalName, stage)
	resumed, err := existsIn(d, jname)
	if err != nil {
		return nil, err
	}
	if !resumed {
		// A fresh commit needs every staging file before it starts.
		for _, name := range names {
			sname := StagingName(name, stage)
			if ok, err := existsIn(d, sname); err != nil {
				return nil, err
			} else if !ok {
				return nil, fmt.Errorf("commit %s: %w for stage %q (%s is missing)", filepath.Join(dir, name), ErrNotStaged, stage, filepath.Join(dir, sname))
			}
		}
		if err := writeJournal(d, jname, names); err != nil {
			return nil, err
		}
	}
	var paths []string
	for _, name := range names {
		p, err := Commit(dir, name, stage, force)
		if errors.Is(err, ErrNotStaged) && resumed {
			// Renamed into place by the attempt that wrote the journal.
			if ok, serr := existsIn(d, name); serr != nil {
				return paths, serr
			} else if ok {
				p, err = filepath.Join(dir, name), nil
			}
		}
		if err != nil {
			return paths, err
		}
		paths = append(paths, p)
		faultpoint.Hit("restore.commit")
	}
	if err := unix.Unlinkat(int(d.Fd()), jname, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return paths, fmt.Errorf("commit in %s: remove journal: %w", dir, err)
	}
	return paths, SyncDir(d)
}

func writeJournal(d *os.File, jname string, names []string) error {
	f, err := OpenAt(d, jname, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("commit in %s: journal: %w", d.Name(), err)
	}
	_, err = f.WriteString(strings.Join(names, "\n") + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = SyncDir(d)
	}
	if err != nil {
		return fmt.Errorf("commit in %s: journal: %w", d.Name(), err)
	}
	return nil
}

func existsIn(d *os.File, name string) (bool, error) {
	err := unix.Fstatat(int(d.Fd()), name, new(unix.Stat_t), unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, &os.PathError{Op: "stat", Path: filepath.Join(d.Name(), name), Err: err}
}
