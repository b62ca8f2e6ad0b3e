package backup

import (
	"bytes"
	"context"
	"math"
	"slices"
	"testing"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/restore"
)

// memWriter is a restored disk in memory.
type memWriter struct{ b []byte }

func (w *memWriter) WriteAt(p []byte, off int64) (int, error) { return copy(w.b[off:], p), nil }

func restoreMem(t *testing.T, v *archiver, root format.ID, size int64) []byte {
	t.Helper()
	w := &memWriter{b: make([]byte, size)}
	if _, err := restore.Disk(context.Background(), v.Repo, root, w, restore.RestoreOptions{Disk: "d"}); err != nil {
		t.Fatal(err)
	}
	return w.b
}

func blocksExt(lo, hi int64) extent.Extent {
	return extent.Extent{Offset: lo * testBlock, Length: (hi - lo) * testBlock}
}

// The sample is a function of its seed, lies only in blocks that may hold
// data and overlap no changed extent, is about rate of them (at least one,
// at most auditMaxBytes), and is sorted without repeats.
func TestAuditSampleSeededOutsideChanged(t *testing.T) {
	lay := format.NewLayout(1000*testBlock, format.Config{BlockSize: testBlock, LeafEntries: 64})
	// Data in blocks [0, 600) and [800, 1000), with a partial block at the
	// end of the first; changed: [100, 200) and a few bytes inside block 300.
	data := []extent.Extent{{Offset: 0, Length: 600*testBlock - 100}, blocksExt(800, 1000)}
	changed := []extent.Extent{blocksExt(100, 200), {Offset: 300*testBlock + 5, Length: 10}}
	const candidates = 600 - 100 - 1 + 200
	inside := func(n int64) bool {
		off, end := n*testBlock, (n+1)*testBlock
		overlaps := func(ext []extent.Extent) bool {
			for _, e := range ext {
				if e.Offset < end && off < e.End() {
					return true
				}
			}
			return false
		}
		return overlaps(data) && !overlaps(changed)
	}
	seed := auditSeed("vm/20260101T000000Z-abcdef", format.ID{1}, "os")
	a := auditSample(lay, data, changed, 0.05, seed)
	if b := auditSample(lay, data, changed, 0.05, seed); !slices.Equal(a, b) {
		t.Fatalf("same seed, two samples:\n%v\n%v", a, b)
	}
	if want := int(math.Ceil(0.05 * candidates)); len(a) != want {
		t.Fatalf("sampled %d blocks of %d, want %d", len(a), candidates, want)
	}
	if !slices.IsSorted(a) || len(slices.Compact(slices.Clone(a))) != len(a) {
		t.Fatalf("sample not sorted or has repeats: %v", a)
	}
	for _, n := range a {
		if !inside(n) {
			t.Fatalf("block %d sampled: outside the data or inside a changed extent", n)
		}
	}
	for _, other := range [][2]uint64{
		auditSeed("vm/20260102T000000Z-abcdef", format.ID{1}, "os"),
		auditSeed("vm/20260101T000000Z-abcdef", format.ID{2}, "os"),
		auditSeed("vm/20260101T000000Z-abcdef", format.ID{1}, "data0"),
	} {
		if b := auditSample(lay, data, changed, 0.05, other); slices.Equal(a, b) {
			t.Fatalf("another parent or disk audits the same blocks: %v", b)
		}
	}
	// The whole candidate set at rate 1.
	all := auditSample(lay, data, changed, 1, seed)
	if len(all) != candidates {
		t.Fatalf("rate 1 sampled %d blocks, want all %d", len(all), candidates)
	}
	for _, n := range all {
		if !inside(n) {
			t.Fatalf("block %d sampled at rate 1", n)
		}
	}
	// At least one; none without a rate or without candidates; a cap.
	if s := auditSample(lay, data, changed, 1e-9, seed); len(s) != 1 {
		t.Fatalf("tiny rate sampled %v, want one block", s)
	}
	if s := auditSample(lay, data, changed, 0, seed); s != nil {
		t.Fatalf("rate 0 sampled %v", s)
	}
	if s := auditSample(lay, data, []extent.Extent{blocksExt(0, 1000)}, 1, seed); s != nil {
		t.Fatalf("everything changed, yet sampled %v", s)
	}
	big := format.NewLayout(3*auditMaxBytes, format.Config{BlockSize: testBlock, LeafEntries: 64})
	if s := auditSample(big, nil, nil, 1, seed); int64(len(s)) != auditMaxBytes/testBlock {
		t.Fatalf("rate 1 of %d blocks sampled %d, want the cap %d", big.Blocks, len(s), auditMaxBytes/testBlock)
	}
}

// A CBT incremental whose changed extents miss blocks that changed: the
// audit catches them, the disk is read in full instead and restores
// bit-exact, and the stats say what the audit found. Without the audit the
// same backup silently keeps the parent's blocks (the test can fail); with a
// truthful tracking the audit passes and the backup stays CBT.
func TestAuditCatchesWhatTheTrackingMissed(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	disk := mixedDisk(21, 128*testBlock)
	full, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	// Block 70 changes and is tracked; blocks 5 (data) and 42 (was zero)
	// change behind the tracking's back.
	now := append(memDisk(nil), disk...)
	for _, b := range []int{5, 42, 70} {
		for i := range 100 {
			now[b*testBlock+i] ^= 0x5a
		}
	}
	tracked := []extent.Extent{blocksExt(70, 71)}
	opt := BackupOptions{Disk: "d", Parent: &full.Root, Changed: tracked, AuditRate: 1, AuditSeed: "vm/1"}

	blind := opt
	blind.AuditRate = 0
	r0, err := v.BackupDisk(ctx, now, blind)
	if err != nil {
		t.Fatal(err)
	}
	if r0.Method != format.MethodCBT || bytes.Equal(restoreMem(t, v, r0.Root, now.Size()), now) {
		t.Fatalf("without the audit: method %s, and the point restores bit-exact: the scenario shows nothing", r0.Method)
	}

	r, err := v.BackupDisk(ctx, now, opt)
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != format.MethodChecksum || r.Stats.AuditMissed != 2 || r.Stats.AuditedBlocks != 127 {
		t.Fatalf("audited backup: method %s, audit %d of %d missed; want checksum, 2 of 127", r.Method, r.Stats.AuditMissed, r.Stats.AuditedBlocks)
	}
	if want := now.Size() + 127*testBlock; r.Stats.ScannedBytes != want {
		t.Fatalf("fallback scanned %d bytes, want the audit's 127 blocks and the whole disk (%d)", r.Stats.ScannedBytes, want)
	}
	if !bytes.Equal(restoreMem(t, v, r.Root, now.Size()), now) {
		t.Fatal("the fallback's point does not restore bit-exact")
	}

	// With a truthful tracking the audit passes and the backup stays CBT.
	opt.Changed = []extent.Extent{blocksExt(5, 6), blocksExt(42, 43), blocksExt(70, 71)}
	opt.AuditRate = 0.1
	ok, err := v.BackupDisk(ctx, now, opt)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Method != format.MethodCBT || ok.Stats.AuditMissed != 0 || ok.Stats.AuditedBlocks != 13 {
		t.Fatalf("truthful tracking: method %s, audit %d of %d missed; want cbt, 0 of 13", ok.Method, ok.Stats.AuditMissed, ok.Stats.AuditedBlocks)
	}
	if ok.Stats.ScannedBytes != (3+13)*testBlock {
		t.Fatalf("cbt with audit scanned %d bytes, want the 3 changed and 13 audited blocks", ok.Stats.ScannedBytes)
	}
	if !bytes.Equal(restoreMem(t, v, ok.Root, now.Size()), now) {
		t.Fatal("the audited cbt point does not restore bit-exact")
	}
}
