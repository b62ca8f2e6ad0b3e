package extent

import (
	"reflect"
	"testing"
)

func TestNormalize(t *testing.T) {
	got := Normalize([]Extent{{10, 5}, {0, 4}, {3, 2}, {20, 0}, {15, 1}})
	want := []Extent{{0, 5}, {10, 6}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if Normalize(nil) != nil {
		t.Fatal("nil must stay nil")
	}
	if got := Normalize([]Extent{}); got == nil || len(got) != 0 {
		t.Fatalf("empty must stay empty, not nil: %v", got)
	}
}

func TestCursor(t *testing.T) {
	c := NewCursor([]Extent{{100, 50}, {300, 10}})
	for _, tc := range []struct {
		off, end int64
		want     bool
	}{{0, 100, false}, {90, 101, true}, {150, 300, false}, {299, 301, true}, {310, 400, false}} {
		if got := c.Overlaps(tc.off, tc.end); got != tc.want {
			t.Fatalf("[%d,%d): got %v want %v", tc.off, tc.end, got, tc.want)
		}
	}
}
