package maint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Garbage collection in two phases with a grace period, in the spirit of
// Proxmox Backup Server (see doc.go, "Garbage collection", for the safety
// argument). GCMark writes the unreferenced packs to gc/candidates, which
// takes them out of every dedup view loaded afterwards (RefreshIndex);
// GCSweep, at least Grace later, deletes the candidates that are still
// unreferenced.

// DefaultGCGrace is the default grace period: longer than the 24-hour
// backup job limit, plus an hour for activities that outlive their job's
// timeout by a little and for the mark's own write.
const DefaultGCGrace = 25 * time.Hour

// GCOptions tune GCMark and GCSweep.
type GCOptions struct {
	// Grace is how long a pack must have been a candidate before a sweep
	// deletes it (0: DefaultGCGrace). It must exceed the longest a backup
	// job can run.
	Grace time.Duration
	// DryRun computes and reports, and writes and deletes nothing.
	DryRun bool
	// RepackBelow makes the mark repack every pack whose referenced blobs
	// take less than this share of it (0: no repacking; GC jobs use
	// DefaultRepackBelow).
	RepackBelow float64
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

func (o GCOptions) grace() time.Duration {
	if o.Grace <= 0 {
		return DefaultGCGrace
	}
	return o.Grace
}

func (o GCOptions) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

// GCMarkReport is what GCMark found.
type GCMarkReport struct {
	MarkedAt        time.Time `json:"marked_at"`
	DryRun          bool      `json:"dry_run,omitempty"`
	RecoveryPoints  int       `json:"recovery_points"`
	SoftDeleted     int       `json:"soft_deleted"`
	Checkpoints     int       `json:"checkpoints"`
	ReferencedBlobs int       `json:"referenced_blobs"`
	Packs           int       `json:"packs"`
	PackBytes       int64     `json:"pack_bytes"`
	// Candidates are the unreferenced packs, now out of dedup; NewCandidates
	// of them were not candidates before.
	Candidates     int   `json:"candidates"`
	NewCandidates  int   `json:"new_candidates"`
	CandidateBytes int64 `json:"candidate_bytes"`
	// Unreadable packs have neither a valid index object nor a readable
	// header: what they hold is unknown, so they are never collected.
	Unreadable []PackProblem `json:"unreadable,omitempty"`
	// Repack is what the mark repacked: those packs become candidates at
	// the next mark.
	Repack RepackReport `json:"repack"`
}

// GCSweepReport is what GCSweep did; the last one is kept in gc/last.
type GCSweepReport struct {
	SweptAt time.Time `json:"swept_at"`
	// MarkedAt is the mark whose candidates were swept.
	MarkedAt time.Time `json:"marked_at"`
	DryRun   bool      `json:"dry_run,omitempty"`
	// DeletedPacks were deleted (with their index objects); FreedBytes is
	// what they and their index objects took.
	DeletedPacks int   `json:"deleted_packs"`
	FreedBytes   int64 `json:"freed_bytes"`
	// Referenced candidates gained a reference since the mark (a backup
	// that had deduplicated against them) and were kept.
	Referenced int `json:"referenced"`
	// NotDue candidates have not been candidates for Grace yet.
	NotDue int `json:"not_due"`
	// StaleCheckpoints were left by backup jobs that ended long ago.
	StaleCheckpoints int `json:"stale_checkpoints"`
	PacksLeft        int `json:"packs_left"`
	// Unreadable packs were left alone (see GCMarkReport).
	Unreadable []PackProblem `json:"unreadable,omitempty"`
	// Locked candidates are under S3 object lock (immutable vault) until
	// LockedUntil at the latest; they stay candidates.
	Locked      int       `json:"locked,omitempty"`
	LockedUntil time.Time `json:"locked_until,omitempty"`
}

func (r *GCSweepReport) noteLocked(until time.Time) {
	r.Locked++
	if until.After(r.LockedUntil) {
		r.LockedUntil = until
	}
}

// gcPack is one stored pack and the blobs it holds.
type gcPack struct {
	size, indexSize int64
	indexKeys       []string // its index objects, oldest first (one, normally)
	blobs           []format.ID
	problem         string // non-empty: contents unknown
	// quarantined packs failed verification (quarantine.go): never repacked,
	// and their damaged blobs are left out of blobs.
	quarantined bool
}

// newestIndexKey is the index object to read ("" if none).
func (p *gcPack) newestIndexKey() string {
	if len(p.indexKeys) == 0 {
		return ""
	}
	return p.indexKeys[len(p.indexKeys)-1]
}

// gcState is what a mark or sweep reads: every pack with its blobs, where
// the tree nodes are, and the blobs referenced.
type gcState struct {
	packs map[format.ID]*gcPack
	// indexKeys are the index objects listed, by pack (also of packs not stored).
	indexKeys map[format.ID][]string
	trees     map[format.ID][]index.Location
	refs      map[format.ID]struct{}
	// holders are the packs holding each referenced blob.
	holders map[format.ID][]format.ID
	// checkpoints are the checkpoint objects read.
	checkpoints          []string
	rps, softDeleted, cp int
}

// GCMark is GC's first phase: every pack none of whose blobs a recovery
// point, a soft-deleted point or a checkpoint references becomes a
// candidate, and the candidates are written to gc/candidates, which keeps
// them out of every dedup view loaded from then on (restores may still read
// them). A candidate keeps the time it was first seen across marks; one
// that is referenced again stops being a candidate.
func (v *maintainer) GCMark(ctx context.Context, opt GCOptions) (GCMarkReport, error) {
	rep := GCMarkReport{DryRun: opt.DryRun}
	prev, err := index.ReadGCCandidates(ctx, v.Storage(), v.Keys())
	if err != nil && !errors.Is(err, format.ErrCorrupt) {
		return rep, fmt.Errorf("gc mark: %w", err)
	}
	// A corrupt gc/candidates is replaced: starting the clocks over only
	// delays deletion.
	st, err := v.gcScan(ctx)
	if err != nil {
		return rep, fmt.Errorf("gc mark: %w", err)
	}
	rep.RecoveryPoints, rep.SoftDeleted, rep.Checkpoints, rep.ReferencedBlobs = st.rps, st.softDeleted, st.cp, len(st.refs)
	firstSeen := map[format.ID]time.Time{}
	for _, c := range prev.Packs {
		firstSeen[c.Pack] = c.FirstSeen
	}
	seenCP := map[string]time.Time{}
	for _, c := range prev.Checkpoints {
		seenCP[c.Key] = c.FirstSeen
	}
	// The clock is read after the scan, just before the write: a backup
	// whose dedup view predates this instant may reference a candidate, and
	// the grace period is counted from here.
	now := opt.now()
	out := format.GCCandidates{MarkedAt: now}
	var readable []format.ID
	for _, id := range sortedPacks(st.packs) {
		p := st.packs[id]
		rep.Packs++
		rep.PackBytes += p.size
		if p.problem != "" {
			rep.Unreadable = append(rep.Unreadable, PackProblem{Pack: id, Key: format.PackKey(id), Reason: p.problem})
			continue
		}
		readable = append(readable, id)
	}
	dropped := st.droppable(readable)
	var kept []format.ID
	for _, id := range readable {
		if !dropped[id] && !st.packs[id].quarantined {
			kept = append(kept, id)
		}
	}
	if rep.Repack, err = v.repack(ctx, st, kept, opt.RepackBelow, opt.DryRun); err != nil {
		return rep, fmt.Errorf("gc mark: %w", err)
	}
	for _, id := range readable {
		p := st.packs[id]
		if !dropped[id] {
			continue
		}
		c := format.GCCandidate{Pack: id, Size: p.size, FirstSeen: now}
		if t, ok := firstSeen[id]; ok && t.Before(now) {
			c.FirstSeen = t
		} else {
			rep.NewCandidates++
		}
		out.Packs = append(out.Packs, c)
		rep.Candidates++
		rep.CandidateBytes += p.size
	}
	for _, key := range st.checkpoints {
		s := format.GCSeen{Key: key, FirstSeen: now}
		if t, ok := seenCP[key]; ok && t.Before(now) {
			s.FirstSeen = t
		}
		out.Checkpoints = append(out.Checkpoints, s)
	}
	rep.MarkedAt = now
	if opt.DryRun {
		return rep, nil
	}
	if err := v.PutSealed(ctx, format.GCCandidatesKey, out); err != nil {
		return rep, fmt.Errorf("gc mark: %w", err)
	}
	// This process's own dedup view follows at once.
	if _, err := v.RefreshIndex(ctx); err != nil {
		return rep, fmt.Errorf("gc mark: %w", err)
	}
	faultpoint.Hit("gc.mark")
	return rep, nil
}

// GCSweep is GC's second phase: it reads the references again (now with
// every recovery point committed since the mark, e.g. by a backup that had
// deduplicated against a candidate before the mark) and deletes each
// candidate that has been one for at least Grace and is still
// unreferenced: the pack, then its index object. Referenced candidates are
// dropped from gc/candidates (back in dedup); the others stay. Checkpoint
// objects first seen Grace ago belong to jobs that have ended and are
// deleted too (their leaves were still counted as references this time).
// The report is kept in gc/last.
func (v *maintainer) GCSweep(ctx context.Context, opt GCOptions) (GCSweepReport, error) {
	rep := GCSweepReport{DryRun: opt.DryRun}
	cands, err := index.ReadGCCandidates(ctx, v.Storage(), v.Keys())
	if err != nil {
		return rep, fmt.Errorf("gc sweep: %w", err)
	}
	rep.MarkedAt = cands.MarkedAt
	st, err := v.gcScan(ctx)
	if err != nil {
		return rep, fmt.Errorf("gc sweep: %w", err)
	}
	now, grace := opt.now(), opt.grace()
	var due []format.ID
	for _, c := range cands.Packs {
		if p, ok := st.packs[c.Pack]; ok && p.problem == "" && now.Sub(c.FirstSeen) >= grace {
			due = append(due, c.Pack)
		}
	}
	dropped := st.droppable(due)
	rest := format.GCCandidates{MarkedAt: cands.MarkedAt, DeletedThrough: cands.DeletedThrough}
	var doomed []format.ID // packs to delete, with their index objects
	var orphans []string   // index objects of packs already gone
	for _, c := range cands.Packs {
		p, stored := st.packs[c.Pack]
		switch {
		case !stored:
			// Deleted by an earlier sweep that stopped before its index
			// object, or lost: the index object is garbage either way.
			orphans = append(orphans, st.indexKeys[c.Pack]...)
		case p.problem != "":
			rep.Unreadable = append(rep.Unreadable, PackProblem{Pack: c.Pack, Key: format.PackKey(c.Pack), Reason: p.problem})
		case now.Sub(c.FirstSeen) < grace:
			if !st.droppable([]format.ID{c.Pack})[c.Pack] {
				rep.Referenced++ // back in dedup
				break
			}
			rep.NotDue++
			rest.Packs = append(rest.Packs, c)
		case !dropped[c.Pack]:
			rep.Referenced++
		default:
			if until, locked, err := v.LockedUntil(ctx, format.PackKey(c.Pack), now); err != nil {
				return rep, fmt.Errorf("gc sweep: %w", err)
			} else if locked {
				rep.noteLocked(until) // object lock: deleted by a sweep after it ends
				rest.Packs = append(rest.Packs, c)
				break
			}
			doomed = append(doomed, c.Pack)
			rep.DeletedPacks++
			rep.FreedBytes += p.size + p.indexSize
		}
	}
	if !opt.DryRun {
		if err := v.deletePacks(ctx, st, doomed, orphans, now, &rest); err != nil {
			return rep, fmt.Errorf("gc sweep: %w", err)
		}
	}
	present := map[string]bool{}
	for _, k := range st.checkpoints {
		present[k] = true
	}
	for _, c := range cands.Checkpoints {
		switch {
		case !present[c.Key]:
		case now.Sub(c.FirstSeen) < grace:
			rest.Checkpoints = append(rest.Checkpoints, c)
		default:
			if !opt.DryRun {
				if err := v.Storage().Delete(ctx, c.Key); err != nil && !errors.Is(err, storage.ErrNotFound) {
					return rep, fmt.Errorf("gc sweep: delete %s: %w", c.Key, err)
				}
			}
			rep.StaleCheckpoints++
		}
	}
	rep.PacksLeft = len(st.packs) - rep.DeletedPacks
	rep.SweptAt = now
	if opt.DryRun {
		return rep, nil
	}
	faultpoint.Hit("gc.swept")
	// Packs are logged and deleted before gc/candidates stops naming them
	// (see RefreshIndex), so no dedup view ever offers a deleted pack.
	if err := v.PutSealed(ctx, format.GCCandidatesKey, rest); err != nil {
		return rep, fmt.Errorf("gc sweep: %w", err)
	}
	if err := v.PutSealed(ctx, format.GCLastKey, rep); err != nil {
		return rep, fmt.Errorf("gc sweep: %w", err)
	}
	if _, err := v.RefreshIndex(ctx); err != nil {
		return rep, fmt.Errorf("gc sweep: %w", err)
	}
	return rep, nil
}

// deletePacks logs packs (gc_log.go), then deletes each pack and its index
// object, and the orphaned index objects; rest learns the log's seq.
func (v *maintainer) deletePacks(ctx context.Context, st *gcState, packs []format.ID, orphans []string, now time.Time, rest *format.GCCandidates) error {
	if len(packs) > 0 {
		seq, err := v.logDeletions(ctx, packs, now, false)
		if err != nil {
			return err
		}
		rest.DeletedThrough = seq
	}
	del := func(keys []string) error {
		for _, key := range keys {
			if err := v.Storage().Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("delete %s: %w", key, err)
			}
		}
		return nil
	}
	for _, id := range packs {
		// Each pack before its index object and quarantine note.
		keys := append([]string{format.PackKey(id)}, st.packs[id].indexKeys...)
		if st.packs[id].quarantined {
			keys = append(keys, format.QuarantineKey(id))
		}
		if err := del(keys); err != nil {
			return err
		}
		faultpoint.Hit("gc.sweep")
	}
	return del(orphans)
}

// GCCandidates returns the current candidates and when they were marked
// (none if GC never ran).
func (v *maintainer) GCCandidates(ctx context.Context) (time.Time, []format.GCCandidate, error) {
	c, err := index.ReadGCCandidates(ctx, v.Storage(), v.Keys())
	return c.MarkedAt, c.Packs, err
}

// LastGC returns the report of the last sweep, or nil if none ran.
func (v *maintainer) LastGC(ctx context.Context) (*GCSweepReport, error) {
	var rep GCSweepReport
	err := v.GetSealed(ctx, format.GCLastKey, &rep)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &rep, nil
}
