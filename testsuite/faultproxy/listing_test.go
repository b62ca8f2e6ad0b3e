package faultproxy

import (
	"strings"
	"testing"
)

func TestFilterListing(t *testing.T) {
	in := `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><KeyCount>3</KeyCount>` +
		`<Contents><Key>v/a</Key><Size>1</Size></Contents>` +
		`<Contents><Key>v/b&amp;c</Key><Size>2</Size></Contents>` +
		`<Contents><Key>v/d</Key><Size>3</Size></Contents></ListBucketResult>`
	out, n := filterListing([]byte(in), func(k string) bool { return k == "v/b&c" })
	want := `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult><Name>b</Name><KeyCount>2</KeyCount>` +
		`<Contents><Key>v/a</Key><Size>1</Size></Contents>` +
		`<Contents><Key>v/d</Key><Size>3</Size></Contents></ListBucketResult>`
	if n != 1 || string(out) != want {
		t.Fatalf("filtered %d:\n%s", n, out)
	}
	if out, n := filterListing([]byte(in), func(string) bool { return false }); n != 0 || string(out) != in {
		t.Fatalf("nothing hidden, got %d:\n%s", n, out)
	}
	if _, n := filterListing([]byte(in), func(k string) bool { return strings.HasPrefix(k, "v/") }); n != 3 {
		t.Fatalf("hid %d of 3", n)
	}
}
