package maint

import (
	"context"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// maintainer carries the maintenance of one vault; its methods are the
// phases and their helpers (gc.go, gc_scan.go, repack.go, check.go,
// repair.go, purge.go).
type maintainer struct {
	*repo.Repo
}

// Maintainer runs a vault's maintenance: GC's mark and sweep (with
// repacking), Check, Repair and the purge of soft-deleted points.
type Maintainer struct {
	m *maintainer
}

// New is the maintainer of the vault r.
func New(r *repo.Repo) *Maintainer { return &Maintainer{&maintainer{r}} }

// GCMark is GC's first phase (see gc.go).
func (m *Maintainer) GCMark(ctx context.Context, opt GCOptions) (GCMarkReport, error) {
	return m.m.GCMark(ctx, opt)
}

// GCSweep is GC's second phase, at least Grace after a mark (see gc.go).
func (m *Maintainer) GCSweep(ctx context.Context, opt GCOptions) (GCSweepReport, error) {
	return m.m.GCSweep(ctx, opt)
}

// GCCandidates are the current candidates and when they were marked.
func (m *Maintainer) GCCandidates(ctx context.Context) (time.Time, []format.GCCandidate, error) {
	return m.m.GCCandidates(ctx)
}

// LastGC is the report of the last sweep (nil if GC never swept).
func (m *Maintainer) LastGC(ctx context.Context) (*GCSweepReport, error) { return m.m.LastGC(ctx) }

// Check verifies that every recovery point can be restored (check.go).
func (m *Maintainer) Check(ctx context.Context, opt CheckOptions) (CheckReport, error) {
	return m.m.Check(ctx, opt)
}

// Repair rebuilds missing or invalid index objects from packs (repair.go).
func (m *Maintainer) Repair(ctx context.Context) (RepairReport, error) { return m.m.Repair(ctx) }

// PurgeDeleted removes the soft-deleted points whose period has ended
// (purge.go).
func (m *Maintainer) PurgeDeleted(ctx context.Context, now time.Time, keepFor time.Duration) ([]string, error) {
	return m.m.PurgeDeleted(ctx, now, keepFor)
}

// DueForPurge are the soft-deleted points PurgeDeleted would remove.
func (m *Maintainer) DueForPurge(ctx context.Context, now time.Time, keepFor time.Duration) ([]format.DeletedPoint, error) {
	return m.m.DueForPurge(ctx, now, keepFor)
}
