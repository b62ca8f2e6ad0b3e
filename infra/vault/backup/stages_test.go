package backup

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// The checkpoint names a leaf only once every pack up to the leaf's newest
// one is durable, even when a later pack finished uploading first.
func TestCheckpointerAdvancesOnlyOverDurablePacks(t *testing.T) {
	lay := format.Layout{Size: 35 * testBlock, BS: testBlock, LE: 8, Blocks: 35, NLeaves: 5}
	c := newCheckpointer(lay, nil, format.DiskStats{})
	ids := []format.ID{{1}, {2}, {3}, {4}, {5}}
	packs := []int{1, 1, 2, 4, 4}
	for i, id := range ids {
		c.finished(id, packs[i], format.DiskStats{DataBytes: int64(i + 1)})
	}
	if c.advance(0) || c.due(time.Now()) {
		t.Fatalf("checkpoint before any pack is durable: %d", c.durable)
	}
	if !c.advance(1) || c.durable != 2 || c.stats.DataBytes != 1+2 {
		t.Fatalf("after pack 1: %d leaves, %+v", c.durable, c.stats)
	}
	if c.advance(1) {
		t.Fatal("checkpoint moved without progress")
	}
	// Pack 4 may be uploaded before pack 3; durableSeq is then still 2.
	if !c.advance(2) || c.durable != 3 {
		t.Fatalf("after pack 2: %d leaves", c.durable)
	}
	if !c.advance(4) || c.durable != 5 || !reflect.DeepEqual(c.leaves[:c.durable], ids) || c.stats.DataBytes != 15 {
		t.Fatalf("after pack 4: %d leaves, %+v", c.durable, c.stats)
	}
}

// A checkpoint resumes only on a leaf boundary inside the disk, and only if
// the index holds every leaf it names.
func TestTrustedCheckpoint(t *testing.T) {
	lay := format.Layout{Size: 20 * testBlock, BS: testBlock, LE: 8, Blocks: 20, NLeaves: 3}
	idx := index.New(t.TempDir())
	idx.AddPack(format.PackIndex{Pack: format.ID{0xaa}, Entries: []format.IndexEntry{{ID: format.ID{1}}, {ID: format.ID{2}}, {ID: format.ID{4}}}})
	for _, tc := range []struct {
		name   string
		leaves []format.ID
		next   int64
		ok     bool
	}{
		{"two leaves", []format.ID{{1}, {2}}, 16, true},
		{"object lists more leaves than used", []format.ID{{1}, {2}, {3}}, 16, true},
		{"whole disk", []format.ID{{1}, {2}, {4}}, 20, true},
		{"leaf not indexed", []format.ID{{1}, {3}}, 16, false},
		{"not on a leaf boundary", []format.ID{{1}}, 12, false},
		{"too few leaves", []format.ID{{1}}, 16, false},
		{"beyond the disk", []format.ID{{1}, {2}, {2}}, 24, false},
		{"at the start", nil, 0, false},
	} {
		if got := trustedLeaves(tc.leaves, tc.next, idx, lay); (got != nil) != tc.ok || got != nil && int64(len(got)) != (tc.next+7)/8 {
			t.Errorf("%s: trusted %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// The read limit holds the read rate at the cap: the measured rate may not
// exceed it by more than the one block of burst (a ratio, so a slow machine
// cannot fail it).
func TestReadLimitHoldsRate(t *testing.T) {
	v, _ := testVault(t)
	const blocks, limit = 24, 4 << 20
	disk := mixedDisk(10, blocks*testBlock)
	start := time.Now()
	r, err := v.BackupDisk(context.Background(), disk, BackupOptions{Disk: "d", ReadLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	rate := float64(r.Stats.ScannedBytes) / time.Since(start).Seconds()
	if bound := float64(limit) * blocks / (blocks - 1); rate > bound*1.05 {
		t.Fatalf("read at %.0f B/s, %.2f times the cap", rate, rate/limit)
	}
}

// failingBackend fails every put after the first n.
type failingBackend struct {
	*memBackend
	n   int
	err error
}

func (f *failingBackend) Put(ctx context.Context, k string, d []byte) error {
	f.Mu.Lock()
	f.n--
	fail := f.n < 0
	f.Mu.Unlock()
	if fail {
		return f.err
	}
	return f.memBackend.Put(ctx, k, d)
}

// The first stage to fail stops the others and its error is returned.
func TestBackupReturnsFirstError(t *testing.T) {
	ctx := context.Background()
	mem := newMem()
	if _, err := repo.Init(ctx, mem, []byte(testSecret), repo.InitOptions{BlockSize: testBlock, PackSize: 256 << 10, LeafEntries: 8, KDFMemoryKiB: testKDFMemoryKiB, KDFTime: 1, KDFThreads: 1}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	be := &failingBackend{memBackend: mem, n: 2, err: boom}
	r, err := repo.Open(ctx, be, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	v := &archiver{r}
	_, err = v.BackupDisk(ctx, mixedDisk(13, 100*testBlock), BackupOptions{Disk: "d"})
	if !errors.Is(err, boom) {
		t.Fatalf("backup with failing storage: %v", err)
	}
	// A read error names the disk and offset.
	_, err = v.BackupDisk(ctx, badDisk{memDisk: mixedDisk(14, 20*testBlock), bad: 7 * testBlock}, BackupOptions{Disk: "d"})
	if err == nil || err.Error() != fmt.Sprintf("disk d: read at offset %d: bad sector", 7*testBlock) {
		t.Fatalf("backup of unreadable disk: %v", err)
	}
}

type badDisk struct {
	memDisk
	bad int64
}

func (d badDisk) ReadAt(p []byte, off int64) (int, error) {
	if off == d.bad {
		return 0, errors.New("bad sector")
	}
	return d.memDisk.ReadAt(p, off)
}

// Cancelling the context stops a backup held back by the read limit at once.
func TestBackupStopsOnCancel(t *testing.T) {
	v, _ := testVault(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		// At 64 KiB/s this would take about 10 s.
		_, err := v.BackupDisk(ctx, mixedDisk(15, 10*testBlock), BackupOptions{Disk: "d", ReadLimit: testBlock})
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled backup: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backup did not stop after cancel")
	}
}
