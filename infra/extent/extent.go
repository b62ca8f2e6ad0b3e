// Package extent is the byte range of a disk that the platforms report
// (data extents, changed extents) and the vault reads: one type for both, so
// neither imports the other.
package extent

import "sort"

// Extent is a byte range of a disk.
type Extent struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// End is the first byte after the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Normalize returns the extents sorted and merged, without empty ones. A nil
// input stays nil (callers tell "unknown" from "none" by it).
func Normalize(ext []Extent) []Extent {
	if ext == nil {
		return nil
	}
	out := append([]Extent{}, ext...)
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	merged := out[:0]
	for _, e := range out {
		if e.Length <= 0 {
			continue
		}
		if n := len(merged); n > 0 && merged[n-1].End() >= e.Offset {
			merged[n-1].Length = max(merged[n-1].Length, e.End()-merged[n-1].Offset)
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// Cursor answers overlap questions about sorted, merged extents for
// increasing offsets, in amortised constant time.
type Cursor struct {
	ext []Extent
	i   int
}

// NewCursor returns a cursor over normalized extents.
func NewCursor(ext []Extent) *Cursor { return &Cursor{ext: ext} }

// Overlaps reports whether [off, end) overlaps an extent. Offsets must not
// decrease from one call to the next.
func (c *Cursor) Overlaps(off, end int64) bool {
	for c.i < len(c.ext) && c.ext[c.i].End() <= off {
		c.i++
	}
	return c.i < len(c.ext) && c.ext[c.i].Offset < end
}
