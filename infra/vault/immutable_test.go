package vault

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// lockMem is a memBackend that can lock objects, like an S3 bucket with
// Object Lock.
type lockMem struct {
	*memBackend
	mu    sync.Mutex // guards until
	until map[string]time.Time
}

func (m *lockMem) PutRetained(ctx context.Context, key string, data []byte, r storage.Retention) error {
	m.mu.Lock()
	m.until[key] = r.Until
	m.mu.Unlock()
	return m.Put(ctx, key, data)
}

func (m *lockMem) RetainedUntil(_ context.Context, key string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.until[key], nil
}

func (m *lockMem) CheckRetention(context.Context) error { return nil }

func TestObjectLockedPacksSurviveGC(t *testing.T) {
	ctx := context.Background()
	be := &lockMem{memBackend: newMem(), until: map[string]time.Time{}}
	v, err := Init(ctx, be, []byte(testSecret), InitOptions{BlockSize: testBlock, PackSize: 256 << 10, LeafEntries: 8, KDFMemoryKiB: testKDFMemoryKiB, KDFTime: 1, KDFThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.SetImmutable(ctx, format.Immutability{Days: 1, ObjectLock: storage.RetentionGovernance}); err != nil {
		t.Fatal(err)
	}
	// A backup that never made a recovery point: its packs are garbage.
	if _, err := v.BackupDisk(ctx, mixedDisk(3, 8*testBlock), BackupOptions{Disk: "d"}); err != nil {
		t.Fatal(err)
	}
	locked := 0
	for k := range be.until {
		if Lockable(k) {
			locked++
		}
	}
	if locked == 0 {
		t.Fatal("no pack or index object was written locked")
	}
	later := time.Now().Add(2 * time.Hour)
	if _, err := v.Maint().GCMark(ctx, GCOptions{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	rep, err := v.Maint().GCSweep(ctx, GCOptions{Grace: time.Hour, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Locked == 0 || rep.DeletedPacks != 0 {
		t.Fatalf("sweep under lock: %+v", rep)
	}
	// After the lock ends, the next sweep deletes them.
	after := time.Now().Add(25 * time.Hour)
	rep, err = v.Maint().GCSweep(ctx, GCOptions{Grace: time.Hour, Now: func() time.Time { return after }})
	if err != nil || rep.Locked != 0 || rep.DeletedPacks == 0 {
		t.Fatalf("sweep after the lock: %+v %v", rep, err)
	}
}
