package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// A blob may be stored in more than one pack (a repack or repair copied it,
// two backups raced to store it), and the index this process loaded may
// predate the pack that holds it now. A read whose copy is gone or fails its
// check tries the others before giving up.

// AnotherCopyMayHelp says whether a blob read failed in a way another copy
// may not share: its pack is gone, or what it read fails the blob's check.
// Other errors (storage down, a cancel) fail the same for every copy.
func AnotherCopyMayHelp(err error) bool {
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, format.ErrMissing) || errors.Is(err, format.ErrCorrupt)
}

// PackTruncated is the damage a read past a pack's end (storage.ErrRange)
// shows: the pack is shorter than its index says. It is corrupt data, so
// another copy is tried, and it fails a job at once instead of being
// retried.
func PackTruncated(err error) error {
	return fmt.Errorf("%w: the pack ends before the blob (truncated): %v", format.ErrCorrupt, err)
}

// ReadOtherCopy reads blob id from a pack other than bad, whose copy failed
// with cause: first the copies the loaded index knows, then those of a
// refreshed index (packs written since it was loaded), then, if the last
// full load is stale, those of a full reload. It returns the plaintext and
// where it was read; when no copy is good, cause, saying so.
func (v *Repo) ReadOtherCopy(ctx context.Context, id format.ID, bad format.ID, cause error) ([]byte, index.Location, error) {
	tried := map[format.ID]bool{bad: true}
	loads := []func(context.Context) (*index.Index, error){v.Index, v.RefreshIndex, func(ctx context.Context) (*index.Index, error) {
		if !v.idx.Stale() {
			return nil, nil
		}
		return v.ReconcileIndex(ctx)
	}}
	for _, load := range loads {
		idx, err := load(ctx)
		if err != nil {
			return nil, index.Location{}, errors.Join(cause, err)
		}
		if idx == nil {
			break
		}
		for _, loc := range idx.Copies(id) {
			if tried[loc.Pack] {
				continue
			}
			tried[loc.Pack] = true
			data, err := v.readAt(ctx, id, loc)
			if err == nil {
				return data, loc, nil
			}
			if !AnotherCopyMayHelp(err) {
				return nil, loc, err
			}
		}
	}
	return nil, index.Location{}, fmt.Errorf("%w (no other good copy in the vault, %d packs tried)", cause, len(tried))
}

// readAt reads and verifies the copy of blob id at loc.
func (v *Repo) readAt(ctx context.Context, id format.ID, loc index.Location) ([]byte, error) {
	sealed, err := v.be.GetRange(ctx, format.PackKey(loc.Pack), int64(loc.Offset), int64(loc.Length))
	if errors.Is(err, storage.ErrRange) {
		return nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), loc.Pack.Short(), PackTruncated(err))
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	data, err := v.keys.OpenBlob(id, sealed)
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	return data, nil
}
