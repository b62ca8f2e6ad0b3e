package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// A bit flipped inside a pack (same size, so its index object stays valid)
// is found by 'vault check --read-data', which quarantines the pack and
// names the damaged point; the next backup stores the block again from the
// intact disk instead of deduplicating against the corrupt copy, and every
// point restores bit-exact.
func TestCorruptBlockQuarantined(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("rot", 4)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), "rot")
	r1 := e.backup("rot").RecoveryPoint
	if err := vmfixture.Mutate(e.vmsRoot(), "rot", 30, 2, 4); err != nil {
		t.Fatal(err)
	}
	want := diskHashes(t, dir)
	r2 := e.backup("rot").RecoveryPoint
	off := e.corruptBlockOf(r1, r2)

	r := e.cli("vault", "check", "--read-data")
	t.Logf("vault check --read-data: exit %d\n%s%s", r.code, r.stderr, r.stdout)
	if r.code != 1 || !strings.Contains(r.stdout, fmt.Sprintf("damaged: %s disk data0 offset %d", r2, off)) ||
		!strings.Contains(r.stdout, "quarantined pack ") || !strings.Contains(r.stderr, "is damaged: 1 of 2 recovery points") {
		t.Fatalf("check --read-data of a flipped bit: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Known from now on without reading data.
	r = e.cli("vault", "check")
	t.Logf("vault check: exit %d\n%s%s", r.code, r.stderr, r.stdout)
	if r.code != 1 || !strings.Contains(r.stdout, fmt.Sprintf("damaged: %s disk data0 offset %d", r2, off)) ||
		!strings.Contains(r.stdout, "1 packs were already in quarantine") {
		t.Fatalf("metadata check after the quarantine: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	b := e.backup("rot")
	t.Logf("backup after the quarantine: %+v", b.Disks)
	var rep vault.CheckReport
	rr := e.cli("vault", "check", "--read-data", "--json")
	if err := json.Unmarshal([]byte(rr.stdout), &rep); err != nil {
		t.Fatalf("check --json: %v\n%s", err, rr.stdout)
	}
	if !rep.OK || rr.code != 0 || rep.RecoveryPoints != 3 || len(rep.Quarantined) != 0 {
		t.Fatalf("after one backup: exit %d, %+v", rr.code, rep)
	}
	r = e.cli("vault", "check")
	t.Logf("vault check after the backup: exit %d\n%s%s", r.code, r.stderr, r.stdout)
	e.restoreDisksMatch(b.RecoveryPoint, want)
	e.restoreDisksMatch(r2, want) // healed: the block is named by its content
}
