package vault

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/vmvault/vmvault/infra/vault/format"
)

var (
	leafMagic = [4]byte{'V', 'V', 'L', '1'}
	rootMagic = [4]byte{'V', 'V', 'R', '1'}
)

// Root is the top of a disk's block map.
type Root struct {
	Size      int64
	BlockSize int
	// LeafEntries is the number of block ids per leaf (the last may hold fewer).
	LeafEntries int
	Leaves      []ID
}

func (r Root) blocks() int64 { return (r.Size + int64(r.BlockSize) - 1) / int64(r.BlockSize) }

func encodeRoot(r Root) []byte {
	b := make([]byte, 0, 4+8+4+4+4+len(r.Leaves)*32)
	b = append(b, rootMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Size))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.BlockSize))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.LeafEntries))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Leaves)))
	for _, id := range r.Leaves {
		b = append(b, id[:]...)
	}
	return b
}

func decodeRoot(b []byte) (Root, error) {
	var r Root
	if len(b) < 24 || [4]byte(b[:4]) != rootMagic {
		return r, fmt.Errorf("%w: not a tree root", ErrCorrupt)
	}
	r.Size = int64(binary.LittleEndian.Uint64(b[4:]))
	r.BlockSize = int(binary.LittleEndian.Uint32(b[12:]))
	r.LeafEntries = int(binary.LittleEndian.Uint32(b[16:]))
	n := int64(binary.LittleEndian.Uint32(b[20:]))
	b = b[24:]
	// The length is checked before anything is allocated for the leaves.
	if int64(len(b)) != n*32 || r.Size < 0 || r.BlockSize <= 0 || r.LeafEntries <= 0 {
		return r, fmt.Errorf("%w: tree root has bad length", ErrCorrupt)
	}
	if want := (r.blocks() + int64(r.LeafEntries) - 1) / int64(r.LeafEntries); int64(n) != want {
		return r, fmt.Errorf("%w: tree root has %d leaves, size needs %d", ErrCorrupt, n, want)
	}
	r.Leaves = make([]ID, n)
	for i := range r.Leaves {
		copy(r.Leaves[i][:], b[i*32:])
	}
	return r, nil
}

func encodeLeaf(ids []ID) []byte {
	b := make([]byte, 0, 4+len(ids)*32)
	b = append(b, leafMagic[:]...)
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

func decodeLeaf(b []byte) ([]ID, error) {
	if len(b) < 4 || [4]byte(b[:4]) != leafMagic || (len(b)-4)%32 != 0 {
		return nil, fmt.Errorf("%w: not a tree leaf", ErrCorrupt)
	}
	ids := make([]ID, (len(b)-4)/32)
	for i := range ids {
		copy(ids[i][:], b[4+i*32:])
	}
	return ids, nil
}

// readBlob fetches, verifies and returns a blob's plaintext.
func (v *Vault) readBlob(ctx context.Context, id ID) ([]byte, error) {
	idx, err := v.Index(ctx)
	if err != nil {
		return nil, err
	}
	loc, ok, err := v.locate(ctx, idx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("blob %s: %w: not in the index", id.Short(), ErrMissing)
	}
	sealed, err := v.be.GetRange(ctx, format.PackKey(loc.Pack), int64(loc.Offset), int64(loc.Length))
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	data, err := v.keys.openBlob(id, sealed)
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	return data, nil
}

// LoadRoot reads a disk's tree root.
func (v *Vault) LoadRoot(ctx context.Context, id ID) (Root, error) {
	b, err := v.readBlob(ctx, id)
	if err != nil {
		return Root{}, fmt.Errorf("tree root: %w", err)
	}
	return decodeRoot(b)
}

func (v *Vault) loadLeaf(ctx context.Context, id ID) ([]ID, error) {
	b, err := v.readBlob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tree leaf: %w", err)
	}
	return decodeLeaf(b)
}

// BlockIDs returns the id of every block of the disk with tree root id, in
// order (ZeroID for zero blocks).
func (v *Vault) BlockIDs(ctx context.Context, id ID) ([]ID, error) {
	root, err := v.LoadRoot(ctx, id)
	if err != nil {
		return nil, err
	}
	ids := make([]ID, 0, root.blocks())
	for _, l := range root.Leaves {
		leaf, err := v.loadLeaf(ctx, l)
		if err != nil {
			return nil, err
		}
		ids = append(ids, leaf...)
	}
	return ids, nil
}

// leafCache holds the last leaf read from a parent tree: the backup stages
// walk a parent leaf by leaf, so one is all they need.
type leafCache struct {
	n   int64 // leaf number in ids, valid when ids != nil
	ids []ID
}

// load returns leaf n of root.
func (c *leafCache) load(ctx context.Context, v *Vault, root *Root, n int64) ([]ID, error) {
	if c.ids != nil && c.n == n {
		return c.ids, nil
	}
	ids, err := v.loadLeaf(ctx, root.Leaves[n])
	if err != nil {
		return nil, err
	}
	c.n, c.ids = n, ids
	return ids, nil
}
