package diskfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A CommitAll that died after renaming some of its disks into place is
// finished by the next attempt, which its journal tells that the missing
// staging files were committed; without the journal a missing staging file
// is still ErrNotStaged.
func TestCommitAllFinishesAfterCrash(t *testing.T) {
	const st = "restore-disks-1"
	dir := t.TempDir()
	names := []string{"data0.raw", "os.raw"}
	for _, n := range names {
		s, err := Stage(dir, n, 4096, st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteAt([]byte(n), 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The crashed attempt: journal written, first disk renamed into place.
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := writeJournal(d, StagingName(journalName, st), names); err != nil {
		t.Fatal(err)
	}
	if _, err := Commit(dir, names[0], st, false); err != nil {
		t.Fatal(err)
	}
	paths, err := CommitAll(dir, names, st, false)
	if err != nil || len(paths) != 2 {
		t.Fatalf("retried commit: %v %v", paths, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("left in %s: %v", dir, ents)
	}
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err != nil || string(b[:len(n)]) != n {
			t.Fatalf("%s: %q %v", n, b[:len(n)], err)
		}
	}
	// Done: a commit without journal or staging files is refused.
	if _, err := CommitAll(dir, names, st, true); !errors.Is(err, ErrNotStaged) {
		t.Fatalf("commit with nothing staged: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("a refused commit left %v", ents)
	}
}
