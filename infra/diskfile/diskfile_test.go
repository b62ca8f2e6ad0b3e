package diskfile_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/imagelock"
)

const stage = "restore-job/7 ünïcode"

func TestStageWriteSparseCommit(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	s, err := diskfile.Stage(dir, "data0.raw", size, stage)
	if err != nil {
		t.Fatal(err)
	}
	if s.Resumed() {
		t.Error("a new staging file says Resumed")
	}
	if base := filepath.Base(s.Path()); !strings.HasPrefix(base, ".data0.raw.restore-") || strings.ContainsAny(base, "/ ü") {
		t.Errorf("staging file %q", base)
	}
	want := bytes.Repeat([]byte("vmvault!"), 512)
	if _, err := s.WriteAt(want, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt(want, size-int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt([]byte{1}, size); err == nil {
		t.Fatal("write beyond size accepted")
	}
	if _, err := s.WriteAt(want, size-10); err == nil {
		t.Fatal("write across the end accepted")
	}
	if _, err := s.WriteAt(want, -1); err == nil {
		t.Fatal("write before the start accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data0.raw")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target exists before commit: %v", err)
	}
	path, err := diskfile.Commit(dir, "data0.raw", stage, false)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "data0.raw") {
		t.Errorf("path %q", path)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size || !bytes.Equal(got[1<<20:1<<20+len(want)], want) || !bytes.Equal(got[size-len(want):], want) {
		t.Fatal("content differs")
	}
	if !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Fatal("unwritten bytes are not zero")
	}
	st, _ := os.Stat(path)
	if blocks := st.Sys().(*syscall.Stat_t).Blocks * 512; blocks > 1<<20 {
		t.Errorf("file uses %d bytes on disk, want it sparse", blocks)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d entries left, want only the image", len(entries))
	}
	// A retry of a finished commit says what happened, and changes nothing.
	if _, err := diskfile.Commit(dir, "data0.raw", stage, false); !errors.Is(err, diskfile.ErrNotStaged) {
		t.Errorf("second Commit: %v", err)
	}
}

func TestResume(t *testing.T) {
	dir := t.TempDir()
	s, err := diskfile.Stage(dir, "os.raw", 8192, stage)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteAt([]byte("first attempt"), 100)
	s.Close()
	s, err = diskfile.Stage(dir, "os.raw", 8192, stage)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Resumed() {
		t.Error("a retry did not resume")
	}
	s.Close()
	got, _ := os.ReadFile(filepath.Join(dir, diskfile.StagingName("os.raw", stage)))
	if !bytes.Contains(got, []byte("first attempt")) {
		t.Error("resuming emptied the staging file")
	}
	// Another size is a fresh start; another stage another file.
	s, err = diskfile.Stage(dir, "os.raw", 4096, stage)
	if err != nil || s.Resumed() {
		t.Fatalf("other size: %v resumed=%v", err, s != nil && s.Resumed())
	}
	s.Close()
	s, err = diskfile.Stage(dir, "os.raw", 4096, "other job")
	if err != nil || s.Resumed() {
		t.Fatalf("other stage: %v", err)
	}
	s.Close()
	if err := diskfile.Abort(dir, stage); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != diskfile.StagingName("os.raw", "other job") {
		t.Errorf("after Abort: %v, want only the other stage's file", entries)
	}
	if err := diskfile.Abort(dir, stage); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if err := diskfile.Abort(filepath.Join(dir, "gone"), stage); err != nil {
		t.Errorf("Abort in a missing dir: %v", err)
	}
}

// The reproduced defect: a disks-only restore pointed at a VM folder wrote
// over a raw image a QEMU held locked.
func TestExistingTargetKeptUnlessForcedAndFree(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "os.raw")
	old := bytes.Repeat([]byte{0xee}, 4096)
	if err := os.WriteFile(target, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := diskfile.Stage(dir, "os.raw", 4096, stage)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteAt([]byte("new"), 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = diskfile.Commit(dir, "os.raw", stage, false)
	if !errors.Is(err, diskfile.ErrExists) || !strings.Contains(err.Error(), target) {
		t.Fatalf("Commit over an existing file: %v", err)
	}
	release, err := imagelock.HoldWriteLock(target)
	if err != nil {
		t.Fatal(err)
	}
	_, err = diskfile.Commit(dir, "os.raw", stage, true)
	if !errors.Is(err, imagelock.ErrBusy) {
		t.Fatalf("forced Commit over a locked image: %v", err)
	}
	release()
	if got, _ := os.ReadFile(target); !bytes.Equal(got, old) {
		t.Fatal("refused commits changed the target")
	}
	if _, err := diskfile.Commit(dir, "os.raw", stage, true); err != nil {
		t.Fatalf("forced Commit: %v", err)
	}
	if got, _ := os.ReadFile(target); !bytes.HasPrefix(got, []byte("new")) {
		t.Fatal("forced commit did not replace the target")
	}
}

func TestSymlinksRefused(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.Mkdir(real, 0o755)
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := diskfile.Stage(link, "os.raw", 4096, stage); !errors.Is(err, diskfile.ErrSymlink) {
		t.Errorf("Stage in a symlinked dir: %v", err)
	}
	if _, err := diskfile.Commit(link, "os.raw", stage, true); !errors.Is(err, diskfile.ErrSymlink) {
		t.Errorf("Commit in a symlinked dir: %v", err)
	}
	// A target that is a symlink to a file elsewhere is never written
	// through, even forced.
	outside := filepath.Join(base, "outside.raw")
	os.WriteFile(outside, []byte("precious"), 0o600)
	if err := os.Symlink(outside, filepath.Join(real, "os.raw")); err != nil {
		t.Fatal(err)
	}
	s, err := diskfile.Stage(real, "os.raw", 4096, stage)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := diskfile.Commit(real, "os.raw", stage, true); !errors.Is(err, diskfile.ErrSymlink) {
		t.Errorf("Commit over a symlink: %v", err)
	}
	// A staging file planted as a symlink is not opened either.
	if err := os.Symlink(outside, filepath.Join(real, diskfile.StagingName("data.raw", stage))); err != nil {
		t.Fatal(err)
	}
	if _, err := diskfile.Stage(real, "data.raw", 4096, stage); !errors.Is(err, diskfile.ErrSymlink) {
		t.Errorf("Stage through a planted symlink: %v", err)
	}
	if got, _ := os.ReadFile(outside); string(got) != "precious" {
		t.Fatal("a file outside was changed")
	}
	for _, name := range []string{"", ".", "..", "a/b", ".hidden"} {
		if _, err := diskfile.Stage(real, name, 1, stage); err == nil {
			t.Errorf("Stage(%q) accepted", name)
		}
	}
}
