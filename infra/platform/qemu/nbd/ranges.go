package nbd

import (
	"fmt"
	"sort"
)

// span is [start, end), relative to a request's offset.
type span struct{ start, end int64 }

// ranges is the part of a read request its reply's chunks answered: sorted,
// disjoint spans, touching ones merged.
type ranges []span

// within adds the chunk kind at+n of a request of length size at off: it
// must describe at least one byte, lie within the request, and overlap no
// earlier chunk.
func (r *ranges) within(kind string, at, n, off, size int64) error {
	if n <= 0 || at < 0 || at > size-n {
		return fmt.Errorf("%s chunk at %d+%d outside the request %d+%d", kind, at+off, n, off, size)
	}
	if err := r.add(at, at+n); err != nil {
		return fmt.Errorf("%s chunk at %d+%d %w", kind, at+off, n, err)
	}
	return nil
}

// add adds [start, end) unless it overlaps what is there.
func (r *ranges) add(start, end int64) error {
	s := *r
	i := sort.Search(len(s), func(i int) bool { return s[i].start >= start })
	if i > 0 && s[i-1].end > start || i < len(s) && s[i].start < end {
		return fmt.Errorf("overlaps an earlier chunk")
	}
	switch {
	case i > 0 && s[i-1].end == start && i < len(s) && s[i].start == end:
		s[i-1].end = s[i].end
		s = append(s[:i], s[i+1:]...)
	case i > 0 && s[i-1].end == start:
		s[i-1].end = end
	case i < len(s) && s[i].start == end:
		s[i].start = start
	default:
		s = append(s, span{})
		copy(s[i+1:], s[i:])
		s[i] = span{start, end}
	}
	*r = s
	return nil
}

// gap returns the first part of [0, size) not answered; ok when there is none.
func (r ranges) gap(size int64) (hole span, ok bool) {
	at := int64(0)
	for _, s := range r {
		if s.start > at {
			return span{at, s.start}, false
		}
		at = s.end
	}
	if at < size {
		return span{at, size}, false
	}
	return span{}, true
}

func (r ranges) total() int64 {
	var n int64
	for _, s := range r {
		n += s.end - s.start
	}
	return n
}
