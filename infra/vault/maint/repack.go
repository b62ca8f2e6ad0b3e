package maint

import (
	"context"
	"fmt"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// DefaultRepackBelow: a pack whose referenced blobs take less than half of
// it is repacked by GC.
const DefaultRepackBelow = 0.5

// RepackReport is what GC's repack step did during a mark.
type RepackReport struct {
	// Packs were mostly garbage; their live blobs were copied into NewPacks.
	Packs        []format.ID `json:"packs,omitempty"`
	LiveBlobs    int         `json:"live_blobs"`
	LiveBytes    int64       `json:"live_bytes"`
	GarbageBytes int64       `json:"garbage_bytes"`
	NewPacks     int         `json:"new_packs"`
}

// repack copies the referenced blobs of every pack in ids whose referenced
// blobs take less than below of it into new packs. The sealed blobs are
// copied as they are (each blob is sealed on its own, bound to its id), each
// verified first, so damage is never copied. The old packs then hold only
// duplicates: the next mark makes them candidates, and a sweep a grace
// period later removes them, so a restore or backup reading them meanwhile
// is safe. With dryRun nothing is written.
func (v *maintainer) repack(ctx context.Context, st *gcState, ids []format.ID, below float64, dryRun bool) (RepackReport, error) {
	var rep RepackReport
	if below <= 0 {
		return rep, nil
	}
	var pk *repo.Packer
	for _, id := range ids {
		p := st.packs[id]
		entries, err := index.PackEntries(ctx, v.Storage(), v.Keys(), id, p.size, p.newestIndexKey())
		if err != nil {
			return rep, fmt.Errorf("repack %s: %w", format.PackKey(id), err)
		}
		var live []format.IndexEntry
		var liveBytes int64
		for _, e := range entries {
			if _, ok := st.refs[e.ID]; ok {
				live = append(live, e)
				liveBytes += int64(e.Length)
			}
		}
		if len(live) == 0 || float64(liveBytes) >= below*float64(p.size) {
			continue
		}
		rep.Packs = append(rep.Packs, id)
		rep.LiveBlobs += len(live)
		rep.LiveBytes += liveBytes
		rep.GarbageBytes += p.size - liveBytes
		if dryRun {
			continue
		}
		if pk == nil {
			pk = repo.NewPacker(ctx, v.Repo)
			defer pk.Abort()
		}
		if err := v.copyBlobs(ctx, pk, id, live); err != nil {
			return rep, err
		}
	}
	if pk == nil {
		return rep, nil
	}
	if err := pk.Finish(); err != nil {
		return rep, fmt.Errorf("repack: %w", err)
	}
	rep.NewPacks = pk.Uploaded()
	return rep, nil
}

// copyBlobs verifies the given blobs of one pack and adds them to pk.
func (v *maintainer) copyBlobs(ctx context.Context, pk *repo.Packer, pack format.ID, blobs []format.IndexEntry) error {
	data, err := v.Storage().Get(ctx, format.PackKey(pack))
	if err != nil {
		return fmt.Errorf("repack %s: %w", format.PackKey(pack), err)
	}
	for _, e := range blobs {
		end := int64(e.Offset) + int64(e.Length)
		if end > int64(len(data)) {
			return fmt.Errorf("repack %s: blob %s: %w: pack is truncated", format.PackKey(pack), e.ID.Short(), format.ErrCorrupt)
		}
		sealed := data[e.Offset:end]
		if _, err := v.Keys().OpenBlob(e.ID, sealed); err != nil {
			return fmt.Errorf("repack %s: blob %s: %w", format.PackKey(pack), e.ID.Short(), err)
		}
		if _, err := pk.AddBlob(e.ID, e.Type, append([]byte(nil), sealed...)); err != nil {
			return fmt.Errorf("repack: %w", err)
		}
	}
	return nil
}
