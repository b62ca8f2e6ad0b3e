package diskfile_test

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vmvault/vmvault/infra/diskfile"
)

func TestCreateWriteSparse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data0.raw")
	const size = 64 << 20
	w, err := diskfile.Create(path, size)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("vmvault!"), 512)
	if _, err := w.WriteAt(want, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(want, size-int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte{1}, size); err == nil {
		t.Fatal("write beyond size accepted")
	}
	if _, err := w.WriteAt(want, size-10); err == nil {
		t.Fatal("write across the end accepted")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size {
		t.Fatalf("size %d", len(got))
	}
	if !bytes.Equal(got[1<<20:1<<20+len(want)], want) || !bytes.Equal(got[size-len(want):], want) {
		t.Fatal("content differs")
	}
	if !bytes.Equal(got[:1<<20], make([]byte, 1<<20)) {
		t.Fatal("unwritten bytes are not zero")
	}
	st, _ := os.Stat(path)
	if blocks := st.Sys().(*syscall.Stat_t).Blocks * 512; blocks > 1<<20 {
		t.Errorf("file uses %d bytes on disk, want it sparse", blocks)
	}
}

func TestCreateTruncatesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "os.raw")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xff}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := diskfile.Create(path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("old content survived: %d bytes", len(got))
	}
}
