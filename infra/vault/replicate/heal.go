package replicate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Heal finds the damage that a replication pass cannot see and replaces it
// from the primary. A pass skips, unread, an immutable object the secondary
// holds at the primary's size, so a byte flipped there (bit rot, a bad
// disk) stays for ever, and every point sharing that pack or manifest is
// unrestorable from the secondary. Heal reads every immutable object of the
// secondary (packs, index objects, manifests, tombstones) and verifies it
// as a pass verifies what it copies (verify). A copy that fails is replaced
// by the primary's copy only after that copy is read and verified intact
// (the very bytes verified are written, then read back and verified); if
// the primary's copy is damaged too, or missing, or the secondary refuses
// the write (an object lock), both verdicts are reported and nothing is
// touched. An intact copy is never written. Objects are settled in key
// order, so an interrupted heal resumes after the last settled one
// (HealOptions.Resume); a copy an interrupted heal replaced but had not
// settled is found intact by the resumed one, and not listed again.

// HealOptions tune a heal of the secondary.
type HealOptions struct {
	// Keys are the vault's keys; a heal cannot run without them.
	Keys *format.Keys
	// Workers verify objects in parallel (default 4).
	Workers int
	// Retention, when set, locks the copies it returns a retention for.
	Retention func(key string) *storage.Retention
	// Progress is called after each verified object (serialized).
	Progress func(HealProgress)
	// Resume continues a heal that was interrupted at this progress: the
	// objects up to its Done were verified then, with its Settled results.
	Resume *HealProgress
}

// HealProgress is where a heal is.
type HealProgress struct {
	ToCheck      int    `json:"to_check"`
	ToCheckBytes int64  `json:"to_check_bytes"`
	Checked      int    `json:"checked"`
	CheckedBytes int64  `json:"checked_bytes"`
	Damaged      int    `json:"damaged"`
	Healed       int    `json:"healed"`
	LastKey      string `json:"last_key,omitempty"`
	// Done is the key up to which, in key order, every object is verified
	// and Settled what the heal found and did in them: a heal resumed at
	// this progress starts after Done and reports Settled too.
	Done    string     `json:"done,omitempty"`
	Settled HealReport `json:"settled"`
}

// HealReport is what a heal found and did.
type HealReport struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// Objects of the secondary read and verified, and their bytes.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// DamagedCount counts the secondary's copies that failed verification,
	// Healed those replaced with the primary's intact copy; Damaged names
	// the first few, each with both verdicts and, if kept, why.
	DamagedCount int        `json:"damaged_count"`
	Healed       int        `json:"healed"`
	Damaged      []Conflict `json:"damaged,omitempty"`
}

// Kept are the damaged copies a heal could not replace.
func (r HealReport) Kept() int { return r.DamagedCount - r.Healed }

// Heal verifies the secondary dst's immutable objects and replaces each
// damaged one with src's copy proven intact (see above).
func Heal(ctx context.Context, src, dst storage.Backend, opt HealOptions) (HealReport, error) {
	rep := HealReport{Source: src.Location(), Target: dst.Location()}
	fail := func(err error) (HealReport, error) {
		return rep, fmt.Errorf("heal %s from %s: %w", dst.Location(), src.Location(), err)
	}
	if opt.Keys == nil {
		return fail(errors.New("the vault's keys are needed to tell a damaged copy from an intact one"))
	}
	srcSizes, err := listSizes(ctx, src, "")
	if err != nil {
		return fail(err)
	}
	dstSizes, err := listSizes(ctx, dst, "")
	if err != nil {
		return fail(fmt.Errorf("secondary: %w", err))
	}
	var keys []string
	for k := range dstSizes {
		if replicated(k) && !mutable(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	c := &copier{src: src, dst: dst, opt: Options{Keys: opt.Keys, Retention: opt.Retention}, limit: rate.NewLimiter(rate.Inf, 0),
		srcSizes: srcSizes, dstSizes: dstSizes, vanished: map[string]bool{}}
	var prog HealProgress
	for _, k := range keys {
		prog.ToCheck++
		prog.ToCheckBytes += dstSizes[k]
	}
	if r := opt.Resume; r != nil && r.Done != "" {
		rep.Objects, rep.Bytes, rep.DamagedCount, rep.Healed = r.Settled.Objects, r.Settled.Bytes, r.Settled.DamagedCount, r.Settled.Healed
		rep.Damaged = append(rep.Damaged, r.Settled.Damaged...)
		prog.Done = r.Done
		keys = keys[sort.SearchStrings(keys, r.Done+"\x00"):]
	}
	// Objects are verified in parallel but settled in key order, so the
	// progress says up to which key the heal is done (Done).
	type result struct {
		n  int64
		cf *Conflict
	}
	results := make([]*result, len(keys))
	next := 0
	settle := func() {
		for ; next < len(keys) && results[next] != nil; next++ {
			r := results[next]
			rep.Objects++
			rep.Bytes += r.n
			if r.cf != nil {
				rep.DamagedCount++
				if r.cf.Replaced {
					rep.Healed++
				}
				if len(rep.Damaged) < maxListed {
					rep.Damaged = append(rep.Damaged, *r.cf)
				}
			}
			results[next] = nil
			prog.Done = keys[next]
		}
		prog.Checked, prog.CheckedBytes, prog.Damaged, prog.Healed = rep.Objects, rep.Bytes, rep.DamagedCount, rep.Healed
		prog.Settled = rep
		prog.Settled.Damaged = slices.Clone(rep.Damaged)
	}
	var mu sync.Mutex
	workers := opt.Workers
	if workers <= 0 {
		workers = 4
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i, key := range keys {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return context.Cause(gctx)
			}
			n, cf, err := c.healOne(gctx, key)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			results[i] = &result{n: n, cf: cf}
			settle()
			prog.LastKey = key
			if opt.Progress != nil {
				opt.Progress(prog)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fail(err) // rep holds what was settled
	}
	return rep, nil
}

// healOne verifies the secondary's copy of key; a damaged one is replaced
// with the primary's copy proven intact. It returns the bytes read on the
// secondary and, if its copy is damaged, the verdicts (nil: intact, or
// gone since the listing).
func (c *copier) healOne(ctx context.Context, key string) (int64, *Conflict, error) {
	sv, data, err := verdict(ctx, c.opt.Keys, c.dst, key, c.packSize(key, c.dstSizes))
	if err != nil {
		return 0, nil, fmt.Errorf("secondary: %w", err)
	}
	if sv == VerdictIntact || sv == VerdictMissing {
		return int64(len(data)), nil, nil
	}
	cf := &Conflict{Key: key, PrimaryBytes: -1, SecondaryBytes: int64(len(data)), Secondary: sv, Primary: VerdictMissing}
	if n, ok := c.srcSizes[key]; ok {
		cf.PrimaryBytes = n
		var good []byte
		if cf.Primary, good, err = verdict(ctx, c.opt.Keys, c.src, key, c.packSize(key, c.srcSizes)); err != nil {
			return 0, nil, err
		}
		if cf.Primary == VerdictIntact {
			if cf.Replaced, cf.Note, err = c.heal(ctx, key, good); err != nil {
				return 0, nil, err
			}
			return int64(len(data)), cf, nil
		}
	}
	switch cf.Primary {
	case VerdictMissing:
		cf.Note = "the primary has no copy"
	default:
		cf.Note = "the primary's copy is damaged too: nothing copied"
	}
	return int64(len(data)), cf, nil
}

// heal writes good, the primary's verified bytes, over the secondary's
// damaged copy of key and reads it back. A write the secondary refuses is
// reported (note), not retried: an object lock that forbids it stays in
// force until the lock ends. The error is only ctx's.
func (c *copier) heal(ctx context.Context, key string, good []byte) (replaced bool, note string, err error) {
	if err := c.replace(ctx, key, good); err != nil {
		if ctx.Err() != nil {
			return false, "", context.Cause(ctx)
		}
		return false, fmt.Sprintf("the secondary refused to overwrite its copy (an object lock or a read-only bucket?): %v", err), nil
	}
	faultpoint.Hit("heal.replace")
	v, _, err := verdict(ctx, c.opt.Keys, c.dst, key, c.packSize(key, c.dstSizes))
	if ctx.Err() != nil {
		return false, "", context.Cause(ctx)
	}
	if err != nil || v != VerdictIntact {
		return false, fmt.Sprintf("the primary's intact copy was written but the secondary reads back %s (%v): it may keep an older locked version", v, err), nil
	}
	return true, "", nil
}
