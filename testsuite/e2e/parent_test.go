package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// A damaged newest point does not block the VM: with the parent's tree
// root of data0 corrupt in its pack, the next backup succeeds, reads data0
// in full and says so, and its point restores bit-exact.
func TestDamagedParentFallsBackToFullRead(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("web3", 5)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), "web3")
	r1 := e.backup("web3")

	ctx := context.Background()
	v := e.openVault()
	p, err := v.LoadRecoveryPoint(ctx, r1.RecoveryPoint)
	if err != nil {
		t.Fatal(err)
	}
	var root string
	for _, d := range p.Disks {
		if d.Name == "data0" {
			idx, err := v.Repo().Index(ctx)
			if err != nil {
				t.Fatal(err)
			}
			loc, ok := idx.Lookup(d.Root)
			if !ok {
				t.Fatal("data0's root not indexed")
			}
			root = d.Root.String()
			flipByte(t, filepath.Join(e.dataDir, "vault", packKeyOf(t, e, loc.Pack.String())), int64(loc.Offset)+int64(loc.Length)/2)
		}
	}
	if root == "" {
		t.Fatal("no data0 in the first point")
	}

	if err := vmfixture.Mutate(e.vmsRoot(), "web3", 20, 2, 6); err != nil {
		t.Fatal(err)
	}
	h2 := diskHashes(t, dir)
	r2 := e.backup("web3")
	want := "disk data0: parent " + r1.RecoveryPoint + " unreadable (root: "
	var note string
	for _, n := range r2.Notes {
		if strings.HasPrefix(n, want) && strings.HasSuffix(n, "): full read") {
			note = n
		}
		if strings.HasPrefix(n, "disk os: parent") {
			t.Errorf("the intact disk os lost its parent: %s", n)
		}
	}
	if note == "" || !strings.Contains(note, "corrupt data") {
		t.Fatalf("no note on the damaged parent of data0: %q", r2.Notes)
	}
	t.Log(note)
	e.restoreDisksMatch(r2.RecoveryPoint, h2)
}

func packKeyOf(t *testing.T, e *env, pack string) string {
	t.Helper()
	for k := range e.objects("packs/") {
		if strings.HasSuffix(k, pack) {
			return k
		}
	}
	t.Fatalf("pack %s not found", pack)
	return ""
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
