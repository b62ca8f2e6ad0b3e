package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Run runs the conformance suite. newBackend must return an empty backend
// not shared with any other call.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"Location", testLocation},
		{"PutGet", testPutGet},
		{"GetRange", testGetRange},
		{"Stat", testStat},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"Overwrite", testOverwrite},
		{"ConcurrentPut", testConcurrentPut},
		{"PutIfAbsent", testPutIfAbsent},
		{"Large", testLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBackend(t))
		})
	}
}

// randBytes returns n reproducible pseudo-random bytes, so a failure prints
// the same data on every run.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, b storage.Backend, key string, data []byte) {
	t.Helper()
	if err := b.Put(t.Context(), key, data); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func mustGet(t *testing.T, b storage.Backend, key string, want []byte) {
	t.Helper()
	got, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes %s, want %d bytes %s", key, len(got), head(got), len(want), head(want))
	}
}

func head(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%x...", b[:16])
	}
	return fmt.Sprintf("%x", b)
}

func list(t *testing.T, b storage.Backend, prefix string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	var mu sync.Mutex // List may call fn concurrently in some backend one day
	err := b.List(t.Context(), prefix, func(key string, size int64) error {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := got[key]; dup {
			return fmt.Errorf("key %q listed twice", key)
		}
		got[key] = size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func testLocation(t *testing.T, b storage.Backend) {
	if b.Location() == "" {
		t.Fatal("Location() is empty")
	}
}

func testPutGet(t *testing.T, b storage.Backend) {
	objects := map[string][]byte{
		"config":                  []byte(`{"version":1}`),
		"packs/ab/abcdef0123":     randBytes(1, 4096+13),
		"index/0001":              randBytes(2, 1),
		"a/b/c/d/e/f/deep-nested": randBytes(3, 100),
		"empty":                   {},
		"dir/empty":               nil,
	}
	for _, k := range slices.Sorted(maps.Keys(objects)) {
		put(t, b, k, objects[k])
	}
	for _, k := range slices.Sorted(maps.Keys(objects)) {
		want := objects[k]
		if want == nil {
			want = []byte{}
		}
		mustGet(t, b, k, want)
	}
}

func testGetRange(t *testing.T, b storage.Backend) {
	data := randBytes(4, 10000)
	put(t, b, "packs/range", data)
	for _, r := range []struct{ off, n int64 }{
		{0, 1},       // head
		{1234, 4321}, // middle
		{9000, 1000}, // tail, to the last byte
		{9999, 1},    // last byte
		{0, 10000},   // whole object
		{5000, 0},    // empty range
	} {
		got, err := b.GetRange(t.Context(), "packs/range", r.off, r.n)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r.off, r.n, err)
		}
		if want := data[r.off : r.off+r.n]; !bytes.Equal(got, want) {
			t.Fatalf("GetRange(%d, %d) = %d bytes %s, want %d bytes %s", r.off, r.n, len(got), head(got), len(want), head(want))
		}
	}
	// A range past the end must not silently return short data, and says
	// the object is short (ErrRange), whether it starts inside or after it.
	for _, off := range []int64{9990, 10000, 20000} {
		if got, err := b.GetRange(t.Context(), "packs/range", off, 20); !errors.Is(err, storage.ErrRange) {
			t.Fatalf("GetRange(%d, 20) past the end returned %d bytes and %v, want ErrRange", off, len(got), err)
		}
	}
}

func testStat(t *testing.T, b storage.Backend) {
	for _, n := range []int{0, 1, 777, 65536} {
		key := fmt.Sprintf("stat/%d", n)
		put(t, b, key, randBytes(uint64(n), n))
		size, err := b.Stat(t.Context(), key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		if size != int64(n) {
			t.Fatalf("Stat(%q) = %d, want %d", key, size, n)
		}
	}
}

func testNotFound(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	put(t, b, "present/x", []byte("x"))
	for _, key := range []string{"missing", "present/missing", "no/such/dir/key"} {
		if _, err := b.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound", key, err)
		}
		if _, err := b.GetRange(ctx, key, 0, 1); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetRange(%q) error = %v, want ErrNotFound", key, err)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q) error = %v, want ErrNotFound", key, err)
		}
	}
}

func testDelete(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	put(t, b, "del/a", []byte("a"))
	put(t, b, "del/b", []byte("bb"))
	if err := b.Delete(ctx, "del/a"); err != nil {
		t.Fatalf("Delete(del/a): %v", err)
	}
	if _, err := b.Get(ctx, "del/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after Delete: error = %v, want ErrNotFound", err)
	}
	if _, err := b.Stat(ctx, "del/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat after Delete: error = %v, want ErrNotFound", err)
	}
	mustGet(t, b, "del/b", []byte("bb"))
	if got, want := list(t, b, "del/"), map[string]int64{"del/b": 2}; !maps.Equal(got, want) {
		t.Fatalf("List after Delete = %v, want %v", got, want)
	}
	for _, key := range []string{"del/a", "never/existed"} {
		if err := b.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%q) of a missing key: %v", key, err)
		}
	}
}

func testList(t *testing.T, b storage.Backend) {
	if got := list(t, b, ""); len(got) != 0 {
		t.Fatalf("List of a new backend = %v, want nothing", got)
	}
	objects := map[string]int{
		"config":          10,
		"packs/00/p1":     100,
		"packs/00/p2":     0,
		"packs/01/p3":     300,
		"packs/011":       5,
		"packsx":          7,
		"index/i1":        11,
		"snapshots/vm1/a": 12,
	}
	for k, n := range objects {
		put(t, b, k, randBytes(uint64(n), n))
	}
	want := func(keys ...string) map[string]int64 {
		m := map[string]int64{}
		for _, k := range keys {
			m[k] = int64(objects[k])
		}
		return m
	}
	all := slices.Collect(maps.Keys(objects))
	for _, tc := range []struct {
		prefix string
		want   map[string]int64
	}{
		{"", want(all...)},
		{"packs/", want("packs/00/p1", "packs/00/p2", "packs/01/p3", "packs/011")},
		{"packs", want("packs/00/p1", "packs/00/p2", "packs/01/p3", "packs/011", "packsx")},
		{"packs/01", want("packs/01/p3", "packs/011")},
		{"packs/00/", want("packs/00/p1", "packs/00/p2")},
		{"packs/00/p1", want("packs/00/p1")},
		{"snapshots/vm1/", want("snapshots/vm1/a")},
		{"nothing/", want()},
		{"con", want("config")},
	} {
		if got := list(t, b, tc.prefix); !maps.Equal(got, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	for _, tc := range []struct {
		prefix, after string
		want          map[string]int64
	}{
		{"packs/", "", want("packs/00/p1", "packs/00/p2", "packs/01/p3", "packs/011")},
		{"packs/", "packs/00/p1", want("packs/00/p2", "packs/01/p3", "packs/011")},
		{"packs/", "packs/00/p0", want("packs/00/p1", "packs/00/p2", "packs/01/p3", "packs/011")},
		{"packs/", "packs/01", want("packs/01/p3", "packs/011")},
		{"packs/", "packs/011", want()},
		{"packs/", "a", want("packs/00/p1", "packs/00/p2", "packs/01/p3", "packs/011")},
		{"packs/", "z", want()},
		{"", "packsx", want("snapshots/vm1/a")},
	} {
		got := map[string]int64{}
		if err := b.ListAfter(t.Context(), tc.prefix, tc.after, func(key string, size int64) error {
			got[key] = size
			return nil
		}); err != nil {
			t.Fatalf("ListAfter(%q, %q): %v", tc.prefix, tc.after, err)
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("ListAfter(%q, %q) = %v, want %v", tc.prefix, tc.after, got, tc.want)
		}
	}

	// An error from fn stops the listing and comes back to the caller.
	stop := errors.New("stop")
	calls := 0
	err := b.List(t.Context(), "", func(string, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with failing fn: err = %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func testOverwrite(t *testing.T, b storage.Backend) {
	put(t, b, "config", []byte("first version, longer"))
	put(t, b, "config", []byte("second"))
	mustGet(t, b, "config", []byte("second"))
	size, err := b.Stat(t.Context(), "config")
	if err != nil || size != 6 {
		t.Fatalf("Stat after overwrite = %d, %v; want 6, nil", size, err)
	}
	if got, want := list(t, b, ""), map[string]int64{"config": 6}; !maps.Equal(got, want) {
		t.Fatalf("List after overwrite = %v, want %v", got, want)
	}
}

func testConcurrentPut(t *testing.T, b storage.Backend) {
	const n = 32
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Keys share new parent directories, so creation races too.
			key := fmt.Sprintf("conc/%02d/obj-%02d", i%4, i)
			errs[i] = b.Put(ctx, key, randBytes(uint64(100+i), 1000+i))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Put: %v", err)
	}
	got := list(t, b, "conc/")
	if len(got) != n {
		t.Fatalf("List after %d concurrent Puts has %d keys: %v", n, len(got), got)
	}
	for i := range n {
		key := fmt.Sprintf("conc/%02d/obj-%02d", i%4, i)
		if got[key] != int64(1000+i) {
			t.Errorf("List size of %q = %d, want %d", key, got[key], 1000+i)
		}
		mustGet(t, b, key, randBytes(uint64(100+i), 1000+i))
	}
}

// PutIfAbsent: of racing writers exactly one wins, the object is the
// winner's, and an existing object is never replaced.
func testPutIfAbsent(t *testing.T, b storage.Backend) {
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = b.PutIfAbsent(t.Context(), "excl/config", randBytes(uint64(200+i), 512)) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("PutIfAbsent: writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Fatalf("PutIfAbsent loser %d: got %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("PutIfAbsent: nobody won")
	}
	mustGet(t, b, "excl/config", randBytes(uint64(200+winner), 512))
	if err := b.PutIfAbsent(t.Context(), "excl/config", []byte("late")); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("PutIfAbsent over an existing object: %v", err)
	}
	mustGet(t, b, "excl/config", randBytes(uint64(200+winner), 512))
	if got := list(t, b, "excl/"); len(got) != 1 {
		t.Fatalf("PutIfAbsent left %v", got)
	}
}

func testLarge(t *testing.T, b storage.Backend) {
	const size = 20 << 20
	data := randBytes(20, size)
	put(t, b, "packs/large", data)
	mustGet(t, b, "packs/large", data)
	got, err := b.GetRange(t.Context(), "packs/large", size-(3<<20)-5, 3<<20)
	if err != nil {
		t.Fatalf("GetRange of large object: %v", err)
	}
	if want := data[size-(3<<20)-5 : size-5]; !bytes.Equal(got, want) {
		t.Fatalf("GetRange of large object: got %d bytes %s, want %d bytes %s", len(got), head(got), len(want), head(want))
	}
	if n, err := b.Stat(t.Context(), "packs/large"); err != nil || n != size {
		t.Fatalf("Stat of large object = %d, %v; want %d, nil", n, err, size)
	}
}
