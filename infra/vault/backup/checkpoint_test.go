package backup

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// A checkpoint is as small for a 4 TiB disk as for a tiny one: the leaves
// are in a sealed object it names, which a resume reads back.
func TestCheckpointSizeIsConstant(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	encode := func(size int64, le int) (int, int) {
		cfg := format.Config{BlockSize: 1 << 20, LeafEntries: le}
		lay := format.NewLayout(size, cfg)
		c := newCheckpointer(lay, nil, format.DiskStats{})
		var leaves []format.ID
		for i := range lay.NLeaves {
			id := format.ID{byte(i), byte(i >> 8), byte(i >> 16), 1}
			leaves = append(leaves, id)
			c.finished(id, 1, format.DiskStats{DataBytes: 1 << 30, ScannedBytes: 1 << 30})
		}
		c.advance(1)
		key := format.NewCheckpointKey()
		cp, err := c.save(ctx, v, key, "sda")
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(cp)
		// It resumes when the index holds the leaves.
		idx := index.New(t.TempDir())
		pi := format.PackIndex{Pack: format.ID{0xee}}
		for _, id := range leaves {
			pi.Entries = append(pi.Entries, format.IndexEntry{ID: id})
		}
		idx.AddPack(pi)
		var back repo.Checkpoint
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		got, err := v.resumeLeaves(ctx, &back, idx, "sda", lay)
		if err != nil || int64(len(got)) != lay.NLeaves {
			t.Fatalf("resume %d of %d leaves: %v", len(got), lay.NLeaves, err)
		}
		if got, _ := v.resumeLeaves(ctx, &back, idx, "sdb", lay); got != nil {
			t.Fatal("checkpoint of another disk resumed")
		}
		return len(js), len(be.Objs[key])
	}
	tiny, _ := encode(3<<20, 1024)
	big, obj := encode(4<<40, 1024)
	small, objSmall := encode(4<<40, 64)
	t.Logf("checkpoint JSON: tiny disk %d bytes, 4 TiB %d bytes (object %d), 4 TiB with 64-entry leaves %d bytes (object %d)", tiny, big, obj, small, objSmall)
	// They differ only by the digits of NextBlock and the stats.
	if big >= 1024 || small >= 1024 || big-tiny > 32 || small-tiny > 32 {
		t.Fatalf("checkpoint JSON of %d, %d and %d bytes", tiny, big, small)
	}
}
