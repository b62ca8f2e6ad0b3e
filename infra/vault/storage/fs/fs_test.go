package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := New(filepath.Join(t.TempDir(), "vault"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestLocation(t *testing.T) {
	dir := t.TempDir()
	b, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Location(), "file://"+dir; got != want {
		t.Fatalf("Location() = %q, want %q", got, want)
	}
}

func TestInvalidKeys(t *testing.T) {
	b, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "/abs", "../escape", "a/../../escape", "a//b", "a/./b", "a/", ".tmp-x", "d/.tmp-y"} {
		if err := b.Put(t.Context(), key, []byte("x")); err == nil {
			t.Errorf("Put(%q) succeeded, want an invalid key error", key)
		}
	}
}

// A temp file left by a crashed Put is not an object.
func TestListSkipsTempFiles(t *testing.T) {
	dir := t.TempDir()
	b, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), "packs/p1", []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "packs", ".tmp-123"), []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := b.List(t.Context(), "", func(key string, _ int64) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "packs/p1" {
		t.Fatalf("List = %v, want [packs/p1]", keys)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "packs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("packs/ has %d entries, want the object and the stray temp file", len(entries))
	}
}
