package maint

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/restore"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Check verifies that every recovery point can be restored: its manifest
// decodes, every disk's tree root and leaves read and decode, every block
// is indexed in a pack that is stored with the right size and, with
// ReadData, opens and hashes to its id; a block a quarantined pack holds
// only damaged counts as damaged without reading. Damage is reported per
// item; an error means Check could not finish (storage unreachable). Check
// builds its own index (the vault's one is only refreshed), and writes
// nothing but the quarantine of each pack in which a blob failed to
// verify, with the salvage of its sound blobs (quarantine.go), unless
// ReadOnly.
func (v *maintainer) Check(ctx context.Context, opt CheckOptions) (CheckReport, error) {
	c := &checker{v: v, opt: opt, idx: index.New(v.IndexStore().Options().Dir), lost: map[format.ID]lostBlob{}, leaves: map[format.ID]*leafOutcome{}, damaged: map[string]bool{}, corrupt: map[format.ID]string{}}
	defer c.idx.Close()
	if c.opt.MaxDamage <= 0 {
		c.opt.MaxDamage = 1000
	}
	if opt.ReadDataPercent <= 0 || opt.ReadDataPercent >= 100 {
		c.opt.ReadDataPercent = 100
	}
	c.readData = opt.ReadData || opt.ReadDataPercent > 0
	load, err := v.IndexStore().LoadInto(ctx, c.idx)
	if err != nil {
		return c.rep, fmt.Errorf("check: %w", err)
	}
	c.rep.Packs = len(load.Packs)
	c.rep.IndexProblems = load.Problems
	if c.quarantined, err = v.readQuarantine(ctx); err != nil {
		return c.rep, fmt.Errorf("check: %w", err)
	}
	excluded := map[format.ID]bool{}
	for id := range c.quarantined {
		excluded[id] = true // lookups prefer a sound copy
	}
	c.idx.SetExcluded(excluded)
	for _, pi := range load.Rejected {
		why := "pack is not in the vault"
		if size, ok := load.Packs[pi.Pack]; ok {
			why = fmt.Sprintf("pack has %d bytes, index says %d", size, pi.Size)
		}
		for _, e := range pi.Entries {
			c.lost[e.ID] = lostBlob{pack: pi.Pack, reason: why}
		}
	}
	for id := range load.Packs {
		if !c.idx.HasPack(id) && !load.RejectedPack(id) {
			c.rep.UnindexedPacks = append(c.rep.UnindexedPacks, id)
		}
	}
	sort.Slice(c.rep.UnindexedPacks, func(i, j int) bool { return c.rep.UnindexedPacks[i].String() < c.rep.UnindexedPacks[j].String() })

	rps, bad, err := v.LoadRecoveryPoints(ctx, format.KindRecoveryPoint.Prefix())
	if err != nil {
		return c.rep, fmt.Errorf("check: %w", err)
	}
	c.rep.CorruptManifests = bad
	for i, rp := range rps {
		for _, d := range rp.Disks {
			if err := c.checkDisk(ctx, rp, d); err != nil {
				return c.rep, fmt.Errorf("check: recovery point %s: disk %s: %w", rp.Ref(), d.Name, err)
			}
			c.rep.Disks++
		}
		c.rep.RecoveryPoints++
		if opt.Progress != nil {
			opt.Progress(CheckProgress{RecoveryPoint: rp.Ref(), Done: i + 1, Total: len(rps), BytesRead: c.rep.BytesRead})
		}
	}
	for ref := range c.damaged {
		c.rep.Damaged = append(c.rep.Damaged, ref)
	}
	sort.Strings(c.rep.Damaged)
	if len(c.corrupt) > 0 && !opt.ReadOnly {
		if c.rep.Quarantined, err = v.quarantineAll(ctx, c.corrupt, nil, true); err != nil {
			return c.rep, fmt.Errorf("check: %w", err)
		}
	}
	c.rep.QuarantinedPacks = len(c.quarantined) + len(c.rep.Quarantined)
	c.rep.OK = len(c.rep.Damaged) == 0 && len(c.rep.IndexProblems) == 0 && len(c.rep.CorruptManifests) == 0
	return c.rep, nil
}

// checker is one run of Check. Leaves are checked once however many disks
// and recovery points share them: an unchanged leaf costs nothing more.
type checker struct {
	v        *maintainer
	opt      CheckOptions
	readData bool
	idx      *index.Index
	// lost are the blobs of index objects left out, with why.
	lost    map[format.ID]lostBlob
	leaves  map[format.ID]*leafOutcome
	damaged map[string]bool
	rep     CheckReport
	// quarantined are the packs in quarantine and their damaged blobs;
	// corrupt are the other packs in which a blob failed to verify, and why.
	quarantined map[format.ID]map[format.ID]bool
	corrupt     map[format.ID]string
}

type lostBlob struct {
	pack   format.ID
	reason string
}

// leafOutcome is what checking a leaf found.
type leafOutcome struct {
	entries int
	bad     []badBlock // if the leaf itself is readable
	err     *badBlock  // the leaf itself is damaged
}

// badBlock is a damaged blob: at position pos of its leaf, if a block.
type badBlock struct {
	pos    int
	id     format.ID
	pack   *format.ID
	reason string
	// corrupt: the blob is in its pack, of the right size, and fails to verify.
	corrupt bool
}

// noteCorrupt remembers the pack of a blob that failed to verify, for
// quarantine.
func (c *checker) noteCorrupt(b badBlock) {
	if b.corrupt && b.pack != nil && c.quarantined[*b.pack] == nil && c.corrupt[*b.pack] == "" {
		c.corrupt[*b.pack] = fmt.Sprintf("blob %s: %s", b.id.Short(), b.reason)
	}
}

// quarantinedBad says whether loc is a quarantined pack's damaged copy of id.
func (c *checker) quarantinedBad(id format.ID, loc index.Location, pos int) (badBlock, bool) {
	if !c.quarantined[loc.Pack][id] {
		return badBlock{}, false
	}
	return badBlock{pos: pos, id: id, pack: &loc.Pack, reason: fmt.Sprintf("%v: failed verification, pack quarantined", format.ErrCorrupt)}, true
}

func (c *checker) add(d Damage) {
	c.damaged[d.VM+"/"+d.RecoveryPoint] = true
	if len(c.rep.Damage) < c.opt.MaxDamage {
		c.rep.Damage = append(c.rep.Damage, d)
	} else {
		c.rep.DamageOmitted++
	}
}

func (c *checker) checkDisk(ctx context.Context, rp format.RecoveryPoint, d format.DiskRecord) error {
	at := func(kind DamageKind, off int64, b badBlock) {
		c.add(Damage{Kind: kind, VM: rp.VM, RecoveryPoint: rp.ID, Disk: d.Name, Offset: off, Blob: b.id, Pack: b.pack, Reason: b.reason})
	}
	plain, bad, err := c.readTree(ctx, d.Root)
	if err != nil {
		return err
	}
	if bad != nil {
		at(DamageRoot, 0, *bad)
		return nil
	}
	root, err := format.DecodeRoot(plain)
	if err == nil && root.Size != d.SizeBytes {
		err = fmt.Errorf("%w: tree root of %d bytes, manifest says %d", format.ErrCorrupt, root.Size, d.SizeBytes)
	}
	if err != nil {
		at(DamageRoot, 0, badBlock{id: d.Root, reason: err.Error()})
		return nil
	}
	bs, le := int64(root.BlockSize), int64(root.LeafEntries)
	lay := format.Layout{Size: root.Size, BS: bs, LE: le, Blocks: root.Blocks(), NLeaves: int64(len(root.Leaves))}
	for li, lid := range root.Leaves {
		off := int64(li) * le * bs
		out := c.leaves[lid]
		if out == nil {
			if out, err = c.checkLeaf(ctx, lid); err != nil {
				return err
			}
			c.leaves[lid] = out
			c.rep.Leaves++
		}
		switch {
		case out.err != nil:
			at(DamageLeaf, off, *out.err)
			continue
		case int64(out.entries) != lay.LeafLen(int64(li)):
			at(DamageLeaf, off, badBlock{id: lid, reason: fmt.Sprintf("%v: leaf lists %d blocks, want %d", format.ErrCorrupt, out.entries, lay.LeafLen(int64(li)))})
			continue
		}
		for _, b := range out.bad {
			at(DamageBlock, off+int64(b.pos)*bs, b)
		}
	}
	return nil
}

// readTree reads a tree node through the check's index. Damage is returned
// as a badBlock; the error is for failures that say nothing about the data.
func (c *checker) readTree(ctx context.Context, id format.ID) ([]byte, *badBlock, error) {
	loc, ok := c.idx.Lookup(id)
	if !ok {
		b := c.missing(id)
		return nil, &b, nil
	}
	if b, bad := c.quarantinedBad(id, loc, 0); bad {
		return nil, &b, nil
	}
	sealed, err := c.v.Storage().GetRange(ctx, format.PackKey(loc.Pack), int64(loc.Offset), int64(loc.Length))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, &badBlock{id: id, pack: &loc.Pack, reason: "pack is not in the vault"}, nil
	}
	if errors.Is(err, storage.ErrRange) {
		b := badBlock{id: id, pack: &loc.Pack, reason: repo.PackTruncated(err).Error(), corrupt: true}
		c.noteCorrupt(b)
		return nil, &b, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tree node %s in pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	c.rep.BlobsRead++
	c.rep.BytesRead += int64(len(sealed))
	plain, err := c.v.Keys().OpenBlob(id, sealed)
	if err != nil {
		b := badBlock{id: id, pack: &loc.Pack, reason: err.Error(), corrupt: true}
		c.noteCorrupt(b)
		return nil, &b, nil
	}
	return plain, nil, nil
}

// missing says why a blob is not in the index.
func (c *checker) missing(id format.ID) badBlock {
	if l, ok := c.lost[id]; ok {
		return badBlock{id: id, pack: &l.pack, reason: fmt.Sprintf("%v: %s", format.ErrMissing, l.reason)}
	}
	return badBlock{id: id, reason: fmt.Sprintf("%v: not in the vault index", format.ErrMissing)}
}

// selected reports whether ReadData reads the blocks in pack.
func (c *checker) selected(pack format.ID) bool {
	if c.opt.ReadDataPercent >= 100 {
		return true
	}
	// Each pack falls in one of 100 buckets; the check reads the window of
	// ReadDataPercent buckets starting at Seed*ReadDataPercent.
	bucket := (binary.LittleEndian.Uint64(pack[:8]) * 0x9e3779b97f4a7c15 >> 32) % 100
	start := (c.opt.Seed % 100) * uint64(c.opt.ReadDataPercent) % 100
	return int((bucket+100-start)%100) < c.opt.ReadDataPercent
}

// checkLeaf reads a leaf and checks the blocks it lists.
func (c *checker) checkLeaf(ctx context.Context, lid format.ID) (*leafOutcome, error) {
	plain, bad, err := c.readTree(ctx, lid)
	if err != nil || bad != nil {
		return &leafOutcome{err: bad}, err
	}
	ids, err := format.DecodeLeaf(plain)
	if err != nil {
		return &leafOutcome{err: &badBlock{id: lid, reason: err.Error()}}, nil
	}
	out := &leafOutcome{entries: len(ids)}
	var wants []restore.Block
	for i, bid := range ids {
		if bid.IsZero() {
			continue
		}
		c.rep.Blocks++
		loc, ok := c.idx.Lookup(bid)
		switch {
		case !ok:
			b := c.missing(bid)
			b.pos = i
			out.bad = append(out.bad, b)
		case c.quarantined[loc.Pack][bid]:
			b, _ := c.quarantinedBad(bid, loc, i)
			out.bad = append(out.bad, b)
		case c.readData && c.selected(loc.Pack):
			wants = append(wants, restore.Block{Off: int64(i), ID: bid, Loc: loc})
		}
	}
	if len(wants) == 0 {
		return out, nil
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, run := range restore.RangeRuns(wants) {
		g.Go(func() error {
			bad, n, read, err := c.readRun(gctx, run)
			mu.Lock()
			defer mu.Unlock()
			out.bad = append(out.bad, bad...)
			c.rep.BlobsRead += n
			c.rep.BytesRead += read
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, b := range out.bad {
		c.noteCorrupt(b)
	}
	sort.Slice(out.bad, func(i, j int) bool { return out.bad[i].pos < out.bad[j].pos })
	return out, nil
}

// readRun reads one range of a pack and verifies its blocks (off is the
// position in the leaf). It returns the damaged ones, the blobs and bytes read.
func (c *checker) readRun(ctx context.Context, r []restore.Block) ([]badBlock, int64, int64, error) {
	first, last := r[0].Loc, r[len(r)-1].Loc
	pack := first.Pack
	start := int64(first.Offset)
	data, err := c.v.Storage().GetRange(ctx, format.PackKey(pack), start, int64(last.Offset)+int64(last.Length)-start)
	if errors.Is(err, storage.ErrRange) && len(r) > 1 { // the pack is short: find where it ends, one block at a time
		var bad []badBlock
		var n, read int64
		for _, w := range r {
			b, bn, bread, err := c.readRun(ctx, []restore.Block{w})
			if err != nil && !errors.Is(err, storage.ErrRange) {
				return nil, 0, 0, err
			}
			if err != nil {
				b = []badBlock{{pos: int(w.Off), id: w.ID, pack: &pack, reason: repo.PackTruncated(err).Error(), corrupt: true}}
			}
			bad, n, read = append(bad, b...), n+bn, read+bread
		}
		return bad, n, read, nil
	}
	var bad []badBlock
	if errors.Is(err, storage.ErrNotFound) {
		for _, w := range r {
			bad = append(bad, badBlock{pos: int(w.Off), id: w.ID, pack: &pack, reason: "pack is not in the vault"})
		}
		return bad, 0, 0, nil
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("block %s in pack %s: %w", r[0].ID.Short(), pack.Short(), err)
	}
	for _, w := range r {
		lo := int64(w.Loc.Offset) - start
		hi := lo + int64(w.Loc.Length)
		if hi > int64(len(data)) {
			bad = append(bad, badBlock{pos: int(w.Off), id: w.ID, pack: &pack, reason: fmt.Sprintf("%v: pack is truncated", format.ErrCorrupt)})
			continue
		}
		if _, err := c.v.Keys().OpenBlob(w.ID, data[lo:hi]); err != nil {
			bad = append(bad, badBlock{pos: int(w.Off), id: w.ID, pack: &pack, reason: err.Error(), corrupt: true})
		}
	}
	faultpoint.Hit("check.read")
	return bad, int64(len(r)), int64(len(data)), nil
}
