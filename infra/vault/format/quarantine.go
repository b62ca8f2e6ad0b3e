package format

import (
	"strings"
	"time"
)

// Quarantine is the sealed object quarantine/<pack id>: a pack that failed
// verification (a blob that does not open or hash to its id, inside a pack
// of the right size). Every index refresh lists these names and keeps the
// packs out of dedup, so no backup references them again; restores may
// still read their sound blobs. It is written once, by Check or Repair,
// before they copy the sound blobs into a new pack.
type Quarantine struct {
	Pack ID        `json:"pack"`
	At   time.Time `json:"at"`
	// Reason is the first verification failure.
	Reason string `json:"reason"`
	// Damaged are the blobs that failed; the others were sound when read.
	Damaged []ID `json:"damaged"`
}

// QuarantineKey is the key of pack's quarantine note.
func QuarantineKey(pack ID) string { return Handle{KindQuarantine, pack.String()}.Key() }

// ParseQuarantineKey returns the pack a quarantine note's key names.
func ParseQuarantineKey(key string) (ID, bool) {
	rest, ok := strings.CutPrefix(key, KindQuarantine.Prefix())
	if !ok {
		return ID{}, false
	}
	id, err := ParseID(rest)
	return id, err == nil
}
