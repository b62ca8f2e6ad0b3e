package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Replication copies a vault, object by object and byte for byte, to a
// second storage (the secondary), which then holds a complete vault with
// the same id, keys and config: it opens with the same secret.
//
// Packs, index objects, manifests and tombstones are immutable (the layout
// table's Mutable property) and named by their content or id, so an object
// already on the secondary with the same size is skipped: a replication
// that died resumes where it stopped, and one after the secondary was
// unreachable catches up, without copying anything twice. An immutable
// object never replaces the secondary's copy (it is written only if
// absent): one the secondary holds at another size is a conflict, whose
// two copies are verified with the vault's keys and reported (a truncated
// or rewritten pack on the primary does not destroy the secondary's good
// one; a secondary copy proven damaged is replaced with the primary's
// proven intact one). With the keys every object is verified before it is copied, and one
// that fails is refused (not copied) and reported. The config and the
// records (policies, protection), which are overwritten in place, are
// compared byte for byte; the config is read once, authenticated, and
// those bytes copied (config.go).
//
// Order: the config first; then the manifests and tombstones are listed,
// before the data, and copied last, after every pack and index object: a
// manifest is written only after its data is durable, so data listed after
// it includes all it needs, and the secondary never holds a recovery point
// whose data it lacks.
//
// Deletions are delayed: an object on the secondary that the primary no
// longer has is recorded in replication/missing with the time it was first
// seen missing, and deleted only DeleteAfter (the soft-delete period)
// later, manifests before data. Only deletions are replicated, not damage
// (delete.go): a pack or index object goes only if GC's deletion log names
// its pack, a manifest only if its point has a tombstone. A point deleted on the primary is purged
// there after the soft-delete period and its data collected after that, so
// the secondary follows one period behind; a primary wiped by mistake or by
// an attacker (bypassing soft delete) leaves the secondary intact for a
// whole period. A tombstone whose point is back on the primary (undelete)
// is removed at once: that deletes no data.

// Options tune a replication.
type Options struct {
	// Now is when the replication runs (default time.Now).
	Now time.Time
	// DeleteAfter is how long an object must have been missing from the
	// primary before it is deleted from the secondary; 0 never deletes.
	DeleteAfter time.Duration
	// Workers copy objects in parallel (default 4).
	Workers int
	// Progress is called after each copied object (from several goroutines,
	// serialized).
	Progress func(Progress)
	// Retention, when set, locks the copies it returns a retention for.
	Retention func(key string) *storage.Retention
	// Limit caps the copy rate in bytes per second (0: no cap), to spare
	// the link between the sites.
	Limit int64
	// Keys are the vault's keys (nil: the copy runs without them). With
	// them, the config is authenticated before it is copied, every object
	// is verified before it is copied, both copies of a conflict are
	// verified, and GC's deletion log says which packs to delete from the
	// secondary; without them no config replaces the secondary's and no
	// pack or index object is deleted there.
	Keys *format.Keys
}

// Progress is where a replication is.
type Progress struct {
	Phase        string `json:"phase"`
	ToCopy       int    `json:"to_copy"`
	ToCopyBytes  int64  `json:"to_copy_bytes"`
	Copied       int    `json:"copied"`
	CopiedBytes  int64  `json:"copied_bytes"`
	LastKey      string `json:"last_key,omitempty"`
	SkippedExist int    `json:"skipped"`
}

// Report is what a replication did.
type Report struct {
	Source string    `json:"source"`
	Target string    `json:"target"`
	At     time.Time `json:"at"`
	// Objects on the primary that replication covers, and their bytes.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Copied objects (and bytes) this run; the rest were there already.
	Copied         int   `json:"copied"`
	CopiedBytes    int64 `json:"copied_bytes"`
	RecoveryPoints int   `json:"recovery_points"`
	// NewRecoveryPoints are manifests copied this run.
	NewRecoveryPoints int `json:"new_recovery_points"`
	// Deleted from the secondary (missing on the primary for DeleteAfter);
	// PendingDeletes are missing on the primary for less.
	Deleted        int       `json:"deleted"`
	PendingDeletes int       `json:"pending_deletes"`
	Duration       float64   `json:"duration_s"`
	ConfigCopied   bool      `json:"config_copied,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	// Conflicts are immutable objects the secondary holds differently
	// (another size); none is overwritten. ConflictCount counts them all,
	// Conflicts names the first few.
	ConflictCount int        `json:"conflict_count,omitempty"`
	Conflicts     []Conflict `json:"conflicts,omitempty"`
	// Refused are objects of the primary that failed verification and
	// were not copied (RefusedCount counts them all).
	RefusedCount int       `json:"refused_count,omitempty"`
	Refused      []Refused `json:"refused,omitempty"`
	// LostOnPrimary are objects the secondary holds and the primary lost
	// without deleting them (a pack or index object no GC deletion log
	// names, a manifest without a tombstone): damage there, kept here.
	LostOnPrimary     int      `json:"lost_on_primary,omitempty"`
	LostOnPrimaryKeys []string `json:"lost_on_primary_keys,omitempty"`
	// DeletesHeld says why no pack or index object was deleted from the
	// secondary this pass, if none could be.
	DeletesHeld string `json:"deletes_held,omitempty"`
}

// replicated says whether key is part of what replication copies (see
// format.Props.Replicated): the vault's objects, not a job's checkpoints,
// GC's state or replication's own.
func replicated(key string) bool {
	return format.KindOf(key).Props().Replicated && !strings.HasPrefix(pathBase(key), ".") // the fs backend's temp files
}

func pathBase(key string) string { return key[strings.LastIndex(key, "/")+1:] }

// mutable keys are overwritten in place: the config and the records.
func mutable(key string) bool { return format.KindOf(key).Props().Mutable }

// replicaStage orders the copy: data, then records, then tombstones and
// manifests.
func replicaStage(key string) format.Stage { return format.KindOf(key).Props().Stage }

// Run copies what src has and dst lacks, see above. It refuses a
// source without a vault config (a primary that is gone must not look
// like an empty vault) and a target holding another vault.
func Run(ctx context.Context, src, dst storage.Backend, opt Options) (Report, error) {
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	rep := Report{Source: src.Location(), Target: dst.Location(), StartedAt: now.UTC()}
	fail := func(err error) (Report, error) {
		return rep, fmt.Errorf("replicate %s to %s: %w", src.Location(), dst.Location(), err)
	}
	copied, err := replicateConfig(ctx, src, dst, opt.Keys, &rep)
	if err != nil {
		return fail(err)
	}
	rep.ConfigCopied = copied
	// Manifests and tombstones before the data: see the order above.
	meta, err := listSizes(ctx, src, format.KindRecoveryPoint.Prefix(), format.KindTombstone.Prefix())
	if err != nil {
		return fail(err)
	}
	all, err := listSizes(ctx, src, "")
	if err != nil {
		return fail(err)
	}
	have, err := listSizes(ctx, dst, "")
	if err != nil {
		return fail(fmt.Errorf("secondary: %w", err))
	}
	c := &copier{src: src, dst: dst, opt: opt, rep: &rep, limit: rate.NewLimiter(rate.Inf, 0), vanished: map[string]bool{},
		srcSizes: all, dstSizes: have}
	if opt.Limit > 0 {
		c.limit = rate.NewLimiter(rate.Limit(opt.Limit), limitBurst)
	}
	todo, conflicts := c.plan(all, meta, have)
	if err := c.conflicts(ctx, conflicts); err != nil {
		return fail(err)
	}
	for stage, keys := range todo {
		if format.Stage(stage) == format.StageIndex {
			keys = c.withoutVanishedPacks(keys)
		}
		sort.Strings(keys)
		c.mu.Lock()
		c.prog.Phase = format.Stage(stage).String()
		c.mu.Unlock()
		n, err := c.copyAll(ctx, keys)
		if err != nil {
			return fail(err)
		}
		if format.Stage(stage) == format.StageRecoveryPoints {
			rep.NewRecoveryPoints = n
		}
	}
	rep.Copied, rep.CopiedBytes = c.prog.Copied, c.prog.CopiedBytes
	gcDeleted, gcErr := deletedByGC(ctx, src, opt.Keys)
	in := deleteInput{all: all, meta: meta, have: have, gcDeleted: gcDeleted, gcErr: gcErr}
	if err := replicateDeletes(ctx, in, dst, now, opt.DeleteAfter, &rep); err != nil {
		return fail(err)
	}
	rep.At = time.Now().UTC()
	rep.Duration = rep.At.Sub(rep.StartedAt).Seconds()
	if data, err := json.Marshal(rep); err == nil {
		if err := dst.Put(ctx, format.ReplicationLast, data); err != nil {
			return fail(err)
		}
	}
	return rep, nil
}

// plan sorts the primary's objects into what to copy, by stage, and the
// conflicts: immutable objects the secondary holds at another size, which
// are never copied over. An immutable object the secondary holds at the
// same size is skipped unread.
func (c *copier) plan(all, meta, have map[string]int64) (todo [format.NumStages][]string, conflicts []string) {
	add := func(key string, size int64) {
		c.rep.Objects++
		c.rep.Bytes += size
		n, ok := have[key]
		switch {
		case ok && !mutable(key) && n == size:
			return
		case ok && !mutable(key):
			conflicts = append(conflicts, key)
			return
		}
		todo[replicaStage(key)] = append(todo[replicaStage(key)], key)
		c.prog.ToCopy++
		c.prog.ToCopyBytes += size
	}
	for key, size := range all {
		if key == format.ConfigKey || !replicated(key) || replicaStage(key) >= format.StageTombstones {
			continue
		}
		add(key, size)
	}
	for key, size := range meta {
		if format.KindOf(key) == format.KindRecoveryPoint {
			c.rep.RecoveryPoints++
		}
		add(key, size)
	}
	sort.Strings(conflicts)
	return todo, conflicts
}

// conflicts verifies both copies of each conflicting key and reports them.
func (c *copier) conflicts(ctx context.Context, keys []string) error {
	for _, key := range keys {
		size := c.srcSizes[key]
		if n, ok := c.dstSizes[key]; ok {
			if err := c.conflict(ctx, key, size, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// limitBurst is the step in which a rate-limited copy waits for tokens.
const limitBurst = 1 << 20

type copier struct {
	src, dst storage.Backend
	opt      Options
	limit    *rate.Limiter
	mu       sync.Mutex
	prog     Progress
	rep      *Report
	// vanished are packs GC deleted between the listing and their copy,
	// and packs that failed verification: their index objects are not copied.
	vanished map[string]bool
	// srcSizes and dstSizes are the listings of both sides.
	srcSizes, dstSizes map[string]int64
}

// withoutVanishedPacks drops the index objects of packs that vanished
// while they were copied: the secondary would hold an index without its pack.
func (c *copier) withoutVanishedPacks(keys []string) []string {
	out := keys[:0]
	for _, k := range keys {
		if id, _, ok := format.ParseIndexKey(k); ok && c.vanished[format.PackKey(id)] {
			continue
		}
		out = append(out, k)
	}
	return out
}

// copyAll copies keys in parallel and returns how many it copied.
func (c *copier) copyAll(ctx context.Context, keys []string) (int, error) {
	workers := c.opt.Workers
	if workers <= 0 {
		workers = 4
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	n := 0
	for _, key := range keys {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return context.Cause(gctx)
			}
			size, res, err := c.copyOne(gctx, key)
			if err != nil {
				return err
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			switch res {
			case copied:
				faultpoint.Hit("replicate.copy")
				n++
				c.prog.Copied++
				c.prog.CopiedBytes += size
			case vanished:
				c.vanished[key] = true
				fallthrough
			default:
				c.prog.SkippedExist++
			}
			c.prog.LastKey = key
			if c.opt.Progress != nil {
				c.opt.Progress(c.prog)
			}
			return nil
		})
	}
	return n, g.Wait()
}

// outcome is what copyOne did with a key.
type outcome uint8

const (
	copied   outcome = iota
	same             // a mutable object already equal, or an immutable one written there since the listing
	vanished         // deleted on the primary since the listing
	refused          // failed verification on the primary (c.refuse)
)

// copyOne copies key as read from the primary, after verifying those
// bytes when it has the vault's keys. An immutable key is written only if
// absent, so not even a race overwrites the secondary's copy.
func (c *copier) copyOne(ctx context.Context, key string) (int64, outcome, error) {
	data, err := c.src.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, vanished, nil // deleted since the listing: nothing to copy
	}
	if err != nil {
		return 0, 0, err
	}
	if c.opt.Keys != nil {
		if err := verify(c.opt.Keys, key, data, c.packSize(key, c.srcSizes)); err != nil {
			c.refuse(key, err)
			return 0, refused, nil
		}
	}
	for n := len(data); n > 0 && c.limit.Limit() != rate.Inf; n -= limitBurst {
		if err := c.limit.WaitN(ctx, min(n, limitBurst)); err != nil {
			return 0, 0, err
		}
	}
	if mutable(key) {
		if old, err := c.dst.Get(ctx, key); err == nil && bytes.Equal(old, data) {
			return 0, same, nil
		}
	}
	if c.opt.Retention != nil {
		if r := c.opt.Retention(key); r != nil {
			if l, ok := c.dst.(storage.Retainer); ok {
				if err := l.PutRetained(ctx, key, data, *r); err != nil {
					return 0, 0, fmt.Errorf("secondary: %w", err)
				}
				return int64(len(data)), copied, nil
			}
		}
	}
	put := c.dst.Put
	if !mutable(key) {
		put = c.dst.PutIfAbsent
	}
	switch err := put(ctx, key, data); {
	case errors.Is(err, storage.ErrExists):
		return 0, same, nil
	case err != nil:
		return 0, 0, fmt.Errorf("secondary: %w", err)
	}
	return int64(len(data)), copied, nil
}

func listSizes(ctx context.Context, be storage.Backend, prefixes ...string) (map[string]int64, error) {
	m := map[string]int64{}
	for _, p := range prefixes {
		if err := be.List(ctx, p, func(key string, size int64) error {
			m[key] = size
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return m, nil
}
