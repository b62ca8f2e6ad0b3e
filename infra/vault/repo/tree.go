package repo

import (
	"context"
	"fmt"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// ReadBlob fetches, verifies and returns a blob's plaintext, from another
// copy when the one the index names is gone or damaged (ReadOtherCopy).
func (v *Repo) ReadBlob(ctx context.Context, id format.ID) ([]byte, error) {
	idx, err := v.Index(ctx)
	if err != nil {
		return nil, err
	}
	loc, ok, err := v.Locate(ctx, idx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("blob %s: %w: not in the index", id.Short(), format.ErrMissing)
	}
	data, err := v.readAt(ctx, id, loc)
	if err != nil && AnotherCopyMayHelp(err) && ctx.Err() == nil {
		data, _, err = v.ReadOtherCopy(ctx, id, loc.Pack, err)
	}
	return data, err
}

// LoadRoot reads a disk's tree root.
func (v *Repo) LoadRoot(ctx context.Context, id format.ID) (format.Root, error) {
	b, err := v.ReadBlob(ctx, id)
	if err != nil {
		return format.Root{}, fmt.Errorf("tree root: %w", err)
	}
	return format.DecodeRoot(b)
}

// LoadLeaf reads and decodes the tree leaf id.
func (v *Repo) LoadLeaf(ctx context.Context, id format.ID) ([]format.ID, error) {
	b, err := v.ReadBlob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tree leaf: %w", err)
	}
	return format.DecodeLeaf(b)
}

// BlockIDs returns the id of every block of the disk with tree root id, in
// order (ZeroID for zero blocks).
func (v *Repo) BlockIDs(ctx context.Context, id format.ID) ([]format.ID, error) {
	root, err := v.LoadRoot(ctx, id)
	if err != nil {
		return nil, err
	}
	ids := make([]format.ID, 0, root.Blocks())
	for _, l := range root.Leaves {
		leaf, err := v.LoadLeaf(ctx, l)
		if err != nil {
			return nil, err
		}
		ids = append(ids, leaf...)
	}
	return ids, nil
}

// LeafCache holds the last leaf read from a parent tree: the backup stages
// walk a parent leaf by leaf, so one is all they need.
type LeafCache struct {
	n   int64 // leaf number in ids, valid when ids != nil
	ids []format.ID
}

// Load returns leaf n of root.
func (c *LeafCache) Load(ctx context.Context, v *Repo, root *format.Root, n int64) ([]format.ID, error) {
	if c.ids != nil && c.n == n {
		return c.ids, nil
	}
	ids, err := v.LoadLeaf(ctx, root.Leaves[n])
	if err != nil {
		return nil, err
	}
	c.n, c.ids = n, ids
	return ids, nil
}
