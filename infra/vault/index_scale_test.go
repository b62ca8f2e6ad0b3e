package vault

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
)

// TestIndexScale is make bench-index: it builds a synthetic vault of
// VMVAULT_INDEX_SCALE stored blocks (index objects of 256 blobs each, as
// 64 KiB blocks in 16 MiB packs give, and sparse pack files of the right
// size), cached under VMVAULT_INDEX_SCALE_DIR, then measures in a fresh
// process what a worker pays: the first load, a refresh after a backup
// adds packs, lookups, and its peak RSS. Skipped unless the variable is set.
func TestIndexScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VMVAULT_INDEX_SCALE"))
	if n <= 0 {
		t.Skip("set VMVAULT_INDEX_SCALE=<blocks> (make bench-index)")
	}
	dir := os.Getenv("VMVAULT_INDEX_SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, fmt.Sprintf("vault-%d", n))
	if os.Getenv("VMVAULT_INDEX_SCALE_PHASE") == "measure" {
		measureIndexScale(t, dir)
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "complete")); err != nil {
		began := time.Now()
		if err := buildScaleVault(dir, n); err != nil {
			t.Fatal(err)
		}
		t.Logf("built a vault of %d blocks in %s", n, time.Since(began).Round(time.Second))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestIndexScale$", "-test.v")
	cmd.Env = append(os.Environ(), "VMVAULT_INDEX_SCALE_PHASE=measure", "VMVAULT_INDEX_SCALE_DIR="+filepath.Dir(dir))
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "| ") {
			fmt.Println(strings.TrimSpace(line))
		}
	}
	if err != nil {
		t.Fatalf("measure: %v\n%s", err, out)
	}
}

const (
	scaleBlobsPerPack = 256
	scaleBlob         = 64 << 10
	scalePackSize     = scaleBlobsPerPack*scaleBlob + 4096
	scaleSecret       = "index scale secret"
)

// buildScaleVault writes a vault of n blocks into dir, bypassing the
// backend's fsyncs (the reader is measured, not the writer).
func buildScaleVault(dir string, n int) error {
	ctx := context.Background()
	os.RemoveAll(dir)
	be, err := fs.New(filepath.Join(dir, "vault"))
	if err != nil {
		return err
	}
	v, err := Init(ctx, be, []byte(scaleSecret), InitOptions{BlockSize: scaleBlob, KDFMemoryKiB: testKDFMemoryKiB, KDFTime: 1, KDFThreads: 1})
	if err != nil {
		return err
	}
	root := filepath.Join(dir, "vault")
	packs := (n + scaleBlobsPerPack - 1) / scaleBlobsPerPack
	// Written over the last 30 days, as a month of backups would be.
	t0 := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	step := (30 * 24 * time.Hour).Milliseconds() / int64(packs)
	var mkdir sync.Map
	g := errgroup.Group{}
	g.SetLimit(runtime.NumCPU())
	const chunk = 1024
	for c := 0; c < packs; c += chunk {
		g.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for p := c; p < min(c+chunk, packs); p++ {
				pi := format.PackIndex{Pack: scaleID(r), Size: scalePackSize}
				for e := 0; e < min(scaleBlobsPerPack, n-p*scaleBlobsPerPack); e++ {
					pi.Entries = append(pi.Entries, format.IndexEntry{ID: scaleID(r), Offset: uint32(e * scaleBlob), Length: scaleBlob, Type: format.BlobData})
				}
				key := format.IndexKeyAt(pi.Pack, time.UnixMilli(t0+int64(p)*step))
				if err := writeScaleFile(root, key, v.Repo().Keys().Seal(nil, format.EncodePackIndex(pi), []byte(key)), &mkdir); err != nil {
					return err
				}
				pk := filepath.Join(root, filepath.FromSlash(format.PackKey(pi.Pack)))
				if err := writeScaleFile(root, format.PackKey(pi.Pack), nil, &mkdir); err != nil {
					return err
				}
				if err := os.Truncate(pk, scalePackSize); err != nil { // sparse
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
}

func scaleID(r *rand.Rand) (id ID) {
	for i := 0; i < len(id); i += 8 {
		binary.LittleEndian.PutUint64(id[i:], r.Uint64())
	}
	return id
}

func writeScaleFile(root, key string, data []byte, made *sync.Map) error {
	p := filepath.Join(root, filepath.FromSlash(key))
	if _, ok := made.Load(filepath.Dir(p)); !ok {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		made.Store(filepath.Dir(p), true)
	}
	return os.WriteFile(p, data, 0o644)
}

// measureIndexScale runs in a fresh process and prints a table.
func measureIndexScale(t *testing.T, dir string) {
	ctx := context.Background()
	be, err := fs.New(filepath.Join(dir, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	lc := &listCounter{Backend: be}
	v, err := Open(ctx, lc, []byte(scaleSecret))
	if err != nil {
		t.Fatal(err)
	}
	v.Repo().SetIndexOptions(index.Options{Dir: filepath.Join(dir, "runs")})
	row := func(what, took, listed, note string) {
		fmt.Printf("| %s | %s | %s | %s MiB | %s |\n", what, took, listed, rss(), note)
	}
	fmt.Println("| step | time | keys listed | peak RSS | notes |")
	fmt.Println("|---|---|---|---|---|")
	began := time.Now()
	idx, err := v.Repo().Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	st := idx.Stats()
	row("first load (full)", time.Since(began).Round(time.Millisecond).String(), strconv.Itoa(lc.total()),
		fmt.Sprintf("%d blobs, %d packs; Go heap in use %d MiB", st.Blobs, st.Packs, ms.HeapInuse>>20))

	// A backup elsewhere adds 40 packs (10,240 blocks); the refresh reads them.
	w, err := Open(ctx, be, []byte(scaleSecret))
	if err != nil {
		t.Fatal(err)
	}
	w.Repo().SetIndexOptions(index.Options{Dir: filepath.Join(dir, "runs")})
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	var fresh []ID
	for range 40 {
		pi := format.PackIndex{Pack: scaleID(r), Size: scalePackSize}
		for e := range scaleBlobsPerPack {
			pi.Entries = append(pi.Entries, format.IndexEntry{ID: scaleID(r), Offset: uint32(e * scaleBlob), Length: scaleBlob, Type: format.BlobData})
			fresh = append(fresh, pi.Entries[e].ID)
		}
		root := filepath.Join(dir, "vault")
		if err := writeScaleFile(root, format.PackKey(pi.Pack), nil, &sync.Map{}); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(root, filepath.FromSlash(format.PackKey(pi.Pack))), scalePackSize); err != nil {
			t.Fatal(err)
		}
		if err := w.Repo().PutPackIndex(ctx, pi); err != nil {
			t.Fatal(err)
		}
	}
	began = time.Now()
	if _, err := v.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	row("refresh after a backup of 40 packs", time.Since(began).Round(time.Millisecond).String(), strconv.Itoa(lc.total()), "lists index objects of the last 10 minutes and the GC log only")
	for _, id := range fresh[:100] {
		if !idx.DedupHas(id) {
			t.Fatal("refresh missed a new blob")
		}
	}
	began = time.Now()
	if _, err := v.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	row("refresh with nothing new", time.Since(began).Round(time.Millisecond).String(), strconv.Itoa(lc.total()), "")

	const lookups = 200_000
	began = time.Now()
	hits := 0
	for i := range lookups {
		id := scaleID(r)
		if i%2 == 0 {
			id = fresh[i%len(fresh)]
		}
		if idx.DedupHas(id) {
			hits++
		}
	}
	if hits != lookups/2 {
		t.Fatalf("%d hits of %d lookups, want half", hits, lookups)
	}
	row(fmt.Sprintf("%d lookups (half present)", lookups), time.Since(began).Round(time.Millisecond).String(), "0",
		fmt.Sprintf("%.1f µs each", float64(time.Since(began).Microseconds())/lookups))
}

// rss is the process's peak resident set (VmHWM) in MiB.
func rss() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return strconv.Itoa(kb >> 10)
		}
	}
	return "?"
}
