package index

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// BenchmarkIndexIngest adds VMVAULT_INDEX_ENTRIES random blobs (default 1M)
// in packs of VMVAULT_INDEX_PER_PACK (default 500) to an index in VMVAULT_INDEX_DIR (default a temporary
// dir), as a worker loading a large vault's index does, and reports the
// ingest rate, the heap in use, the process's peak RSS and lookup times.
// It fails if the peak RSS passes 256 MiB. Run it alone, so that the peak
// is its own:
//
//	VMVAULT_INDEX_ENTRIES=100000000 go test ./infra/vault -run '^$' \
//	    -bench IndexIngest -benchtime 1x -timeout 2h
func BenchmarkIndexIngest(b *testing.B) {
	n, perPack := envInt(b, "VMVAULT_INDEX_ENTRIES", 1_000_000), envInt(b, "VMVAULT_INDEX_PER_PACK", 500)
	dir := os.Getenv("VMVAULT_INDEX_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	for i := 0; i < b.N; i++ {
		// The peak is this benchmark's: make bench runs it after others in
		// one process (writing 5 to clear_refs resets VmHWM, Linux 4.0+).
		runtime.GC()
		debug.FreeOSMemory()
		reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
		x := New(dir)
		r := rand.New(rand.NewPCG(uint64(i), 15))
		var sample []format.ID // every 1000th blob, to look up
		pi := format.PackIndex{Size: 16 << 20, Entries: make([]format.IndexEntry, perPack)}
		start := time.Now()
		for added := 0; added < n; added += perPack {
			pi.Pack = randID(r)
			for e := range pi.Entries {
				pi.Entries[e] = format.IndexEntry{ID: randID(r), Offset: uint32(e) << 15, Length: 1 << 15, Type: format.BlobData}
				if (added+e)%1000 == 0 {
					sample = append(sample, pi.Entries[e].ID)
				}
			}
			x.AddPack(pi)
		}
		added := time.Since(start)
		x.Settle()
		settled := time.Since(start)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		x.mu.RLock()
		runs := len(x.runs)
		x.mu.RUnlock()

		t := time.Now()
		for _, id := range sample {
			if !x.DedupHas(id) {
				b.Fatalf("%s missing", id.Short())
			}
		}
		hit := time.Since(t) / time.Duration(len(sample))
		t = time.Now()
		for range sample {
			if x.DedupHas(randID(r)) {
				b.Fatal("random id found")
			}
		}
		miss := time.Since(t) / time.Duration(len(sample))

		hwm := vmHWM(b)
		b.ReportMetric(float64(n)/added.Seconds(), "entries/s")
		b.ReportMetric(settled.Seconds(), "settled-s")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(hwm)/(1<<20), "hwm-MiB")
		b.ReportMetric(float64(runs), "runs")
		b.ReportMetric(float64(hit.Nanoseconds()), "hit-ns")
		b.ReportMetric(float64(miss.Nanoseconds()), "miss-ns")
		if err := x.Close(); err != nil {
			b.Fatal(err)
		}
		if reset && hwm > 256<<20 {
			b.Fatalf("peak RSS %d MiB for %d entries", hwm>>20, n)
		}
	}
}

func envInt(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%s: want a positive number", name, s)
	}
	return n
}

// vmHWM returns the process's peak resident set size.
func vmHWM(tb testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(v, []byte("kB")))), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}
