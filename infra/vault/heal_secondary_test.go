package vault

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// A byte flipped in the secondary's copy of a pack or manifest keeps its
// size, so replication skips it unread; HealSecondary finds it and
// replaces it with the primary's copy, but only a copy verified intact.

// flipObj flips one byte in the middle of be's object key (same size) and
// returns the damaged bytes.
func flipObj(t *testing.T, be storage.Backend, key string) []byte {
	t.Helper()
	data := getObj(t, be, key)
	data[len(data)/2] ^= 0x5a
	if err := be.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
	return data
}

// writeCounter counts the writes to a backend; refuse makes Put fail, as
// a bucket that forbids overwrites does.
type writeCounter struct {
	storage.Backend
	puts   atomic.Int32
	refuse bool
}

func (w *writeCounter) Put(ctx context.Context, key string, data []byte) error {
	w.puts.Add(1)
	if w.refuse {
		return errors.New("access denied: object is locked")
	}
	return w.Backend.Put(ctx, key, data)
}

func (w *writeCounter) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	w.puts.Add(1)
	return w.Backend.PutIfAbsent(ctx, key, data)
}

func mustHeal(t *testing.T, v *Vault, src, dst storage.Backend) HealReport {
	t.Helper()
	rep, err := HealSecondary(context.Background(), src, dst, HealOptions{Keys: v.Repo().Keys()})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Damaged {
		t.Log(d)
	}
	return rep
}

func TestHealSecondaryReplacesFlippedCopies(t *testing.T) {
	disk := distinctDisk(31, 24)
	v, src, dst, _ := replicaPair(t, disk)
	keys := v.Repo().Keys()
	mustReplicate(t, src, dst, ReplicateOptions{Keys: keys})
	pack := keysOf(t, src, "packs/")[0]
	manifest := keysOf(t, src, "recoverypoints/")[0]
	flipObj(t, dst, pack)
	flipObj(t, dst, manifest)

	// A replication pass reads nothing it holds at the same size: the
	// flips stay, and the pass writes nothing.
	counted := &writeCounter{Backend: dst}
	if rep := mustReplicate(t, src, counted, ReplicateOptions{Keys: keys}); rep.Copied != 0 || rep.ConflictCount != 0 {
		t.Fatalf("replication of a same-size flip: %+v", rep)
	}
	if bytes.Equal(getObj(t, dst, pack), getObj(t, src, pack)) {
		t.Fatal("a replication pass healed a same-size flip: it read the secondary")
	}

	rep := mustHeal(t, v, src, dst)
	if rep.DamagedCount != 2 || rep.Healed != 2 || rep.Kept() != 0 || len(rep.Damaged) != 2 {
		t.Fatalf("heal: %+v", rep)
	}
	for _, d := range rep.Damaged {
		if !d.Replaced || d.Primary != "intact" || !strings.HasPrefix(d.Secondary, "damaged") ||
			!strings.Contains(d.String(), "replaced with the primary's intact copy") {
			t.Errorf("heal of %s: %+v", d.Key, d)
		}
	}
	for _, k := range []string{pack, manifest} {
		if !bytes.Equal(getObj(t, dst, k), getObj(t, src, k)) {
			t.Errorf("the secondary's %s is not the primary's copy after the heal", k)
		}
	}
	if want := len(keysOf(t, dst, "packs/")) + len(keysOf(t, dst, "index/")) + len(keysOf(t, dst, "recoverypoints/")); rep.Objects != want {
		t.Errorf("heal verified %d objects, the secondary holds %d immutable ones", rep.Objects, want)
	}
	restoresFromSecondary(t, v, dst, "a", disk)

	// An intact secondary is read, found intact and never written.
	counted = &writeCounter{Backend: dst}
	if rep := mustHeal(t, v, src, counted); rep.DamagedCount != 0 || rep.Objects == 0 || counted.puts.Load() != 0 {
		t.Fatalf("heal of an intact secondary: %+v, %d writes", rep, counted.puts.Load())
	}
	if rep := mustReplicate(t, src, dst, ReplicateOptions{Keys: keys}); rep.Copied != 0 || rep.ConflictCount != 0 {
		t.Fatalf("replication after the heal: %+v", rep)
	}
}

// A copy damaged on both sides is reported with both verdicts and left
// alone: damage is never copied over damage.
func TestHealSecondaryRefusesDamagedPrimary(t *testing.T) {
	v, src, dst, _ := replicaPair(t, distinctDisk(32, 24))
	mustReplicate(t, src, dst, ReplicateOptions{Keys: v.Repo().Keys()})
	pack := keysOf(t, src, "packs/")[0]
	onSrc := flipObj(t, src, pack)
	onDst := getObj(t, dst, pack)
	onDst[len(onDst)/3] ^= 0x01
	if err := dst.Put(context.Background(), pack, onDst); err != nil {
		t.Fatal(err)
	}
	counted := &writeCounter{Backend: dst}
	rep := mustHeal(t, v, src, counted)
	if rep.DamagedCount != 1 || rep.Healed != 0 || rep.Kept() != 1 || len(rep.Damaged) != 1 {
		t.Fatalf("heal: %+v", rep)
	}
	d := rep.Damaged[0]
	if d.Key != pack || d.Replaced || !strings.HasPrefix(d.Primary, "damaged") || !strings.HasPrefix(d.Secondary, "damaged") ||
		!strings.Contains(d.String(), "damaged too") {
		t.Fatalf("both copies damaged: %+v", d)
	}
	if counted.puts.Load() != 0 || !bytes.Equal(getObj(t, dst, pack), onDst) || !bytes.Equal(getObj(t, src, pack), onSrc) {
		t.Fatal("a copy was written although both are damaged")
	}
}

// A secondary that refuses the overwrite (an object lock) is reported as
// a conflict that says so; the heal does not fail.
func TestHealSecondaryReportsRefusedOverwrite(t *testing.T) {
	v, src, dst, _ := replicaPair(t, distinctDisk(33, 24))
	mustReplicate(t, src, dst, ReplicateOptions{Keys: v.Repo().Keys()})
	manifest := keysOf(t, src, "recoverypoints/")[0]
	damaged := flipObj(t, dst, manifest)
	rep := mustHeal(t, v, src, &writeCounter{Backend: dst, refuse: true})
	if rep.DamagedCount != 1 || rep.Healed != 0 || len(rep.Damaged) != 1 || rep.Damaged[0].Primary != "intact" ||
		!strings.Contains(rep.Damaged[0].String(), "refused to overwrite") {
		t.Fatalf("heal of a locked copy: %+v", rep)
	}
	if !bytes.Equal(getObj(t, dst, manifest), damaged) {
		t.Fatal("the refused copy changed")
	}
}

// getCounter counts the reads of each key.
type getCounter struct {
	storage.Backend
	mu   sync.Mutex
	gets map[string]int
}

func (g *getCounter) Get(ctx context.Context, key string) ([]byte, error) {
	g.mu.Lock()
	g.gets[key]++
	g.mu.Unlock()
	return g.Backend.Get(ctx, key)
}

// A heal interrupted (its worker killed) resumes from its last progress:
// it does not read again what it verified, and reports what it healed
// before the interruption too.
func TestHealSecondaryResumes(t *testing.T) {
	v, src, dst, _ := replicaPair(t, distinctDisk(34, 24))
	keys := v.Repo().Keys()
	mustReplicate(t, src, dst, ReplicateOptions{Keys: keys})
	pack := keysOf(t, src, "packs/")[0]
	manifest := keysOf(t, src, "recoverypoints/")[0]
	flipObj(t, dst, pack)
	flipObj(t, dst, manifest)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var at HealProgress
	_, err := HealSecondary(ctx, src, dst, HealOptions{Keys: keys, Workers: 1, Progress: func(p HealProgress) {
		if at.Done == "" && p.Healed == 1 {
			at = p
			cancel()
		}
	}})
	if err == nil || at.Done != pack || at.Settled.Healed != 1 {
		t.Fatalf("interrupted heal: %v, progress %+v", err, at)
	}
	if bytes.Equal(getObj(t, dst, manifest), getObj(t, src, manifest)) {
		t.Fatal("the manifest was healed before the interruption; the test cannot tell a resume")
	}
	counted := &getCounter{Backend: dst, gets: map[string]int{}}
	rep, err := HealSecondary(context.Background(), src, counted, HealOptions{Keys: keys, Resume: &at})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DamagedCount != 2 || rep.Healed != 2 || len(rep.Damaged) != 2 || rep.Damaged[0].Key != pack || rep.Damaged[1].Key != manifest {
		t.Fatalf("resumed heal: %+v", rep)
	}
	for k, n := range counted.gets {
		if k <= at.Done {
			t.Errorf("the resumed heal read %s again (%d times)", k, n)
		}
	}
	if want := len(keysOf(t, dst, "packs/")) + len(keysOf(t, dst, "index/")) + len(keysOf(t, dst, "recoverypoints/")); rep.Objects != want {
		t.Errorf("resumed heal reports %d objects verified, the secondary holds %d", rep.Objects, want)
	}
	restoresFromSecondary(t, v, dst, "a", distinctDisk(34, 24))
}
