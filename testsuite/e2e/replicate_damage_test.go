package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// TestReplicateDamageNotSpread: on MinIO, a pack truncated on the primary
// and one rewritten there with junk of another size are conflicts that
// `vault replicate` reports and never copies over the secondary's good
// copies; a pack lost on the primary stays on the secondary; the point
// still restores bit-exact from the secondary.
func TestReplicateDamageNotSpread(t *testing.T) {
	e := newEnv(t, envOpts{s3: true, initArgs: []string{"--pack-size", "1048576"}})
	_, sec := e.addSecondary()
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("app5", 21)); err != nil {
		t.Fatal(err)
	}
	want := diskHashes(t, filepath.Join(e.vmsRoot(), "app5"))
	res := e.backup("app5")
	e.mustCLI("vault", "replicate", "--wait")
	ctx := context.Background()
	var packs []string
	for k := range e.objects("packs/") {
		packs = append(packs, k)
	}
	sort.Strings(packs)
	if len(packs) < 3 {
		t.Fatalf("%d packs, want 3 or more", len(packs))
	}
	good := map[string][]byte{}
	for _, p := range packs[:3] {
		b, err := sec.Get(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		good[p] = b
	}
	if err := e.be.Put(ctx, packs[0], good[packs[0]][:len(good[packs[0]])/2]); err != nil {
		t.Fatal(err)
	}
	if err := e.be.Put(ctx, packs[1], bytes.Repeat([]byte("junk"), 4096)); err != nil {
		t.Fatal(err)
	}
	if err := e.be.Delete(ctx, packs[2]); err != nil {
		t.Fatal(err)
	}
	out := e.mustCLI("vault", "replicate", "--wait")
	t.Logf("vault replicate --wait:\n%s", out)
	for _, s := range []string{"2 conflicts", packs[0] + ": primary", "damaged: ", "secondary " + itoa(len(good[packs[0]])) + " bytes, intact (kept)",
		"gone from the primary without being deleted", packs[2]} {
		if !strings.Contains(out, s) {
			t.Fatalf("vault replicate output lacks %q:\n%s", s, out)
		}
	}
	stats := e.mustCLI("vault", "stats")
	t.Logf("vault stats:\n%s", stats)
	if !strings.Contains(stats, "2 objects differ between primary and secondary") {
		t.Fatalf("vault stats does not report the conflicts:\n%s", stats)
	}
	for p, b := range good {
		got, err := sec.Get(ctx, p)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s on the secondary changed: %v", p, err)
		}
	}
	e.restoreFromSecondaryMatches(res.RecoveryPoint, want)
}

func itoa(n int) string { return strconv.Itoa(n) }
