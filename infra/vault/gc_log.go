package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// GC's deletion log: before a sweep deletes packs it writes their ids to
// gc/deleted/<seq>, seq one more than the newest log (16 hex digits, taken
// with PutIfAbsent, so two sweeps never share one and a log is listed only
// once every earlier one is). A refresh reads the logs after the last one
// it read and forgets their packs, instead of listing every pack to see
// which vanished. gc/candidates, rewritten after the deletions, names the
// newest log (DeletedThrough), so a refresh that reads it knows which logs
// it must see.

// lastDeletionLog returns the newest log's seq (0: none).
func (v *Vault) lastDeletionLog(ctx context.Context) (uint64, error) {
	var last uint64
	err := v.be.List(ctx, format.KindDeletionLog.Prefix(), func(key string, _ int64) error {
		if seq, ok := format.ParseDeletionLogKey(key); ok {
			last = max(last, seq)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list %s in %s: %w", format.KindDeletionLog.Prefix(), v.be.Location(), err)
	}
	return last, nil
}

// readDeletionLogs reads the logs after seq and returns the newest seq and
// the packs they name. A log that cannot be read fails the refresh: the
// packs it names may be gone.
func (v *Vault) readDeletionLogs(ctx context.Context, after uint64) (uint64, map[ID]bool, error) {
	var seqs []uint64
	newest := after
	err := v.be.ListAfter(ctx, format.KindDeletionLog.Prefix(), format.DeletionLogKey(after), func(key string, _ int64) error {
		if seq, ok := format.ParseDeletionLogKey(key); ok && seq > after {
			seqs = append(seqs, seq)
			newest = max(newest, seq)
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("list %s in %s: %w", format.KindDeletionLog.Prefix(), v.be.Location(), err)
	}
	gone := map[ID]bool{}
	for _, seq := range seqs {
		var l format.DeletionLog
		if err := v.getSealed(ctx, format.DeletionLogKey(seq), &l); err != nil {
			return 0, nil, fmt.Errorf("read GC deletion log: %w", err)
		}
		for _, p := range l.Packs {
			gone[p] = true
		}
	}
	return newest, gone, nil
}

// logDeletions writes the next deletion log naming packs and returns its seq.
func (v *Vault) logDeletions(ctx context.Context, packs []ID, now time.Time) (uint64, error) {
	for range 100 {
		last, err := v.lastDeletionLog(ctx)
		if err != nil {
			return 0, err
		}
		key := format.DeletionLogKey(last + 1)
		data, err := format.SealJSON(v.keys, key, format.DeletionLog{At: now, Packs: packs})
		if err != nil {
			return 0, err
		}
		switch err := v.be.PutIfAbsent(ctx, key, data); {
		case err == nil:
			return last + 1, nil
		case !errors.Is(err, storage.ErrExists):
			return 0, fmt.Errorf("put %s: %w", key, err)
		}
		// Another sweep took this seq: look again.
	}
	return 0, fmt.Errorf("put %snext: too many concurrent sweeps", format.KindDeletionLog.Prefix())
}
