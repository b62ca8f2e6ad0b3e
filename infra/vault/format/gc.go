package format

import "time"

// DeletionLog is the sealed object gc/deleted/<seq>.
type DeletionLog struct {
	At    time.Time `json:"at"`
	Packs []ID      `json:"packs"`
	// Lost logs name packs that were already gone when written (repair
	// dropped their index objects), not packs a sweep deleted: every
	// index forgets them, but replication keeps the secondary's copies,
	// which may be the only good ones.
	Lost bool `json:"lost,omitempty"`
}

// GCCandidate is a pack that no recovery point, soft-deleted point or
// checkpoint referenced when GC last looked, since FirstSeen.
type GCCandidate struct {
	Pack      ID        `json:"pack"`
	Size      int64     `json:"size"`
	FirstSeen time.Time `json:"first_seen"`
}

// GCSeen is a checkpoint object and when GC first saw it.
type GCSeen struct {
	Key       string    `json:"key"`
	FirstSeen time.Time `json:"first_seen"`
}

// GCCandidates is the sealed object gc/candidates.
type GCCandidates struct {
	MarkedAt time.Time `json:"marked_at"`
	// DeletedThrough is the newest GC deletion log when this was written
	// (maint/gc_log.go): a refresh must have read it before trusting these.
	DeletedThrough uint64        `json:"deleted_through,omitempty"`
	Packs          []GCCandidate `json:"packs"`
	Checkpoints    []GCSeen      `json:"checkpoints,omitempty"`
}

// Excluded returns the packs dedup must not reference.
func (c GCCandidates) Excluded() map[ID]bool {
	out := make(map[ID]bool, len(c.Packs))
	for _, p := range c.Packs {
		out[p.Pack] = true
	}
	return out
}
