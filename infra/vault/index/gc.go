package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// What the index reads besides index objects: GC's candidates and deletion
// logs (gc/, written by maintenance), and a pack's blobs from its index
// object or its header, for GC.

// GC's deletion log: before a sweep deletes packs it writes their ids to
// gc/deleted/<seq>, seq one more than the newest log (16 hex digits, taken
// with PutIfAbsent, so two sweeps never share one and a log is listed only
// once every earlier one is). A refresh reads the logs after the last one
// it read and forgets their packs, instead of listing every pack to see
// which vanished. gc/candidates, rewritten after the deletions, names the
// newest log (DeletedThrough), so a refresh that reads it knows which logs
// it must see.

// LastDeletionLog returns the newest log's seq (0: none).
func LastDeletionLog(ctx context.Context, be storage.Backend) (uint64, error) {
	var last uint64
	err := be.List(ctx, format.KindDeletionLog.Prefix(), func(key string, _ int64) error {
		if seq, ok := format.ParseDeletionLogKey(key); ok {
			last = max(last, seq)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list %s in %s: %w", format.KindDeletionLog.Prefix(), be.Location(), err)
	}
	return last, nil
}

// ReadDeletionLogs reads the logs after seq and returns the newest seq and
// the packs they name, lost ones included. A log that cannot be read fails
// the refresh: the packs it names may be gone.
func ReadDeletionLogs(ctx context.Context, be storage.Backend, keys *format.Keys, after uint64) (uint64, map[format.ID]bool, error) {
	return readDeletionLogs(ctx, be, keys, after, true)
}

// ReadSweptPacks returns the packs GC's sweeps deleted on purpose: what
// the deletion logs name, less the packs repair found lost (the logs with
// Lost set). Only those deletions are replicated.
func ReadSweptPacks(ctx context.Context, be storage.Backend, keys *format.Keys) (map[format.ID]bool, error) {
	_, swept, err := readDeletionLogs(ctx, be, keys, 0, false)
	return swept, err
}

func readDeletionLogs(ctx context.Context, be storage.Backend, keys *format.Keys, after uint64, lost bool) (uint64, map[format.ID]bool, error) {
	var seqs []uint64
	newest := after
	err := be.ListAfter(ctx, format.KindDeletionLog.Prefix(), format.DeletionLogKey(after), func(key string, _ int64) error {
		if seq, ok := format.ParseDeletionLogKey(key); ok && seq > after {
			seqs = append(seqs, seq)
			newest = max(newest, seq)
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("list %s in %s: %w", format.KindDeletionLog.Prefix(), be.Location(), err)
	}
	gone := map[format.ID]bool{}
	for _, seq := range seqs {
		var l format.DeletionLog
		if err := format.GetSealed(ctx, be, keys, format.DeletionLogKey(seq), &l); err != nil {
			return 0, nil, fmt.Errorf("read GC deletion log: %w", err)
		}
		if l.Lost && !lost {
			continue
		}
		for _, p := range l.Packs {
			gone[p] = true
		}
	}
	return newest, gone, nil
}

// ReadGCCandidates reads gc/candidates; none is an empty set.
func ReadGCCandidates(ctx context.Context, be storage.Backend, keys *format.Keys) (format.GCCandidates, error) {
	var c format.GCCandidates
	err := format.GetSealed(ctx, be, keys, format.GCCandidatesKey, &c)
	if errors.Is(err, storage.ErrNotFound) {
		return format.GCCandidates{}, nil
	}
	return c, err
}

// PackEntries returns the blobs of the pack id of size bytes: from its
// index object at indexKey if that is valid, else from the pack's header
// (GC reads every pack this way).
func PackEntries(ctx context.Context, be storage.Backend, keys *format.Keys, id format.ID, size int64, indexKey string) ([]format.IndexEntry, error) {
	if indexKey != "" {
		pi, err := GetPackIndex(ctx, be, keys, indexKey)
		if err == nil && pi.Size == size {
			return pi.Entries, nil
		}
		if err != nil && !errors.Is(err, format.ErrCorrupt) && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	// No valid index object (an interrupted upload, or damage): the header.
	key := format.PackKey(id)
	if size < 4 {
		return nil, fmt.Errorf("%s: %w: pack of %d bytes", key, format.ErrCorrupt, size)
	}
	tail, err := be.GetRange(ctx, key, size-4, 4)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	n := int64(binary.LittleEndian.Uint32(tail))
	if n > size-4 {
		return nil, fmt.Errorf("%s: %w: header of %d bytes", key, format.ErrCorrupt, n)
	}
	sealed, err := be.GetRange(ctx, key, size-4-n, n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	entries, err := format.OpenPackHeader(keys, sealed, int(size-4-n))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return entries, nil
}

// ListQuarantined returns the packs named under quarantine/ (Check or
// Repair found them damaged): dedup must not offer them. Only the names are
// read, one listing per refresh, and it is empty in a sound vault.
func ListQuarantined(ctx context.Context, be storage.Backend) (map[format.ID]bool, error) {
	out := map[format.ID]bool{}
	err := be.List(ctx, format.KindQuarantine.Prefix(), func(key string, _ int64) error {
		if id, ok := format.ParseQuarantineKey(key); ok {
			out[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", format.KindQuarantine.Prefix(), be.Location(), err)
	}
	return out, nil
}
