package maint

import (
	"context"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
)

// Two sweeps never share a deletion log: the second takes the next seq.
func TestDeletionLogSeq(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	now := time.Now()
	for want := uint64(1); want <= 3; want++ {
		seq, err := v.logDeletions(ctx, []format.ID{{byte(want)}}, now, false)
		if err != nil || seq != want {
			t.Fatalf("log %d: seq %d, %v", want, seq, err)
		}
	}
	seq, gone, err := index.ReadDeletionLogs(ctx, v.Storage(), v.Keys(), 1)
	if err != nil || seq != 3 || len(gone) != 2 || !gone[format.ID{2}] || !gone[format.ID{3}] || gone[format.ID{1}] {
		t.Fatalf("logs after 1: %d %v %v", seq, gone, err)
	}
}
