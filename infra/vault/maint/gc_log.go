package maint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
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

// logDeletions writes the next deletion log naming packs and returns its
// seq; lost says the packs were gone already (repair), not swept.
func (v *maintainer) logDeletions(ctx context.Context, packs []format.ID, now time.Time, lost bool) (uint64, error) {
	for range 100 {
		last, err := index.LastDeletionLog(ctx, v.Storage())
		if err != nil {
			return 0, err
		}
		key := format.DeletionLogKey(last + 1)
		data, err := format.SealJSON(v.Keys(), key, format.DeletionLog{At: now, Packs: packs, Lost: lost})
		if err != nil {
			return 0, err
		}
		switch err := v.Storage().PutIfAbsent(ctx, key, data); {
		case err == nil:
			return last + 1, nil
		case !errors.Is(err, storage.ErrExists):
			return 0, fmt.Errorf("put %s: %w", key, err)
		}
		// Another sweep took this seq: look again.
	}
	return 0, fmt.Errorf("put %snext: too many concurrent sweeps", format.KindDeletionLog.Prefix())
}
