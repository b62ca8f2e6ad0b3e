package vault

import (
	"bytes"
	"context"
	"testing"
)

// A resumed restore writes only the leaves from StartLeaf on, reports where
// it resumed, and its progress names the next leaf to resume from.
func TestRestoreResumesAtLeaf(t *testing.T) {
	v, _ := testVault(t)
	ctx := context.Background()
	disk := mixedDisk(7, 40*testBlock+123) // 6 leaves of 8 blocks
	res, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	leafBytes := int64(8 * testBlock)
	w := &memWriter{b: bytes.Repeat([]byte{0xAA}, len(disk))}
	var next []int
	out, err := v.RestoreDisk(ctx, res.Root, w, RestoreOptions{Disk: "d", StartLeaf: 2, Progress: func(p Progress) { next = append(next, p.NextLeaf) }})
	if err != nil {
		t.Fatal(err)
	}
	if out.ResumedAt != 2*leafBytes {
		t.Fatalf("ResumedAt %d, want %d", out.ResumedAt, 2*leafBytes)
	}
	if !bytes.Equal(w.b[:2*leafBytes], bytes.Repeat([]byte{0xAA}, int(2*leafBytes))) {
		t.Fatal("a resumed restore rewrote leaves before StartLeaf")
	}
	// Zero blocks are skipped (the staging file reads zero there); compare
	// the written part with the disk where the disk is not zero.
	for off := 2 * leafBytes; off < int64(len(disk)); off += testBlock {
		end := min(off+testBlock, int64(len(disk)))
		if !isZero(disk[off:end]) && !bytes.Equal(w.b[off:end], disk[off:end]) {
			t.Fatalf("block at %d not restored", off)
		}
	}
	if len(next) != 4 || next[0] != 3 || next[3] != 6 {
		t.Fatalf("progress NextLeaf %v, want 3..6", next)
	}
	// A checkpoint of another disk (past the end) starts over, whole.
	w2 := &memWriter{b: make([]byte, len(disk))}
	if out, err := v.RestoreDisk(ctx, res.Root, w2, RestoreOptions{Disk: "d", StartLeaf: 99}); err != nil || out.ResumedAt != 0 {
		t.Fatalf("StartLeaf past the end: %v, resumed at %d", err, out.ResumedAt)
	}
	if !bytes.Equal(w2.b, disk) {
		t.Fatal("restore from the start is not bit-exact")
	}
}

// isZero says whether b is all zero bytes (a zero block is not stored).
func isZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }
