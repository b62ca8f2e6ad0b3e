// Command bench compares vmvault with restic and borg on one workload, in
// one run, and prints one table (issue 9):
//
//	make bench          # or: go run ./testsuite/cmd/bench
//
// The workload is built once and cached in ~/.cache/vmvault/bench/<key>
// ($VMVAULT_BENCH_CACHE): a 4 GiB sparse raw image holding an ext4 file
// system made with mke2fs -d from the tests' Debian guest (testsuite/guest),
// part of the Go toolchain and 512 MiB of incompressible data; and two
// churned copies (1% of the disk, then 5% more) written into the image by
// a seeded model of clustered file rewrites and scattered 4 KiB writes.
//
// Every tool then runs the same steps on the same images: full backup,
// incremental after 1% churn, after 5% churn, a backup with no change, and
// a restore of the latest to a file that is synced. vmvault runs through
// its library (the images platform and the vault, as a worker's activity
// would, without Temporal), in a child process so that its RSS and I/O
// are its own; restic and borg run as Debian ships them. Caches are
// dropped before each timed step when the machine allows. Rows go to the
// file named by $BENCH_JSON when set.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vmvault/vmvault/infra/vault"
)

var noE2E bool

func main() {
	if len(os.Args) == 3 && os.Args[1] == childArg {
		childMain(os.Args[2])
		return
	}
	minioFlag := flag.String("minio", "bin/minio", "MinIO server binary (make tools)")
	only := flag.String("only", "", "comma-separated tools to run (default all), e.g. \"vmvault fs,restic fs\"")
	all := flag.Bool("all", false, "also restic on MinIO (minutes), and every step for vmvault's variants")
	flag.BoolVar(&noE2E, "no-e2e", false, "skip the end-to-end rows (CLI + Temporal dev server + worker)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *minioFlag, *only, *all); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, minioBin, only string, all bool) error {
	log := os.Stderr
	began := time.Now()
	loadBefore := loadAvg()
	w, err := loadWorkload(ctx, log)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	runDir, err := os.MkdirTemp(w.Dir, "run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	e := env{vmRoot: filepath.Join(runDir, "vm"), work: runDir, exe: exe}
	if err := os.MkdirAll(filepath.Join(e.vmRoot, "bench"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.vmRoot, "bench", "vm.json"), []byte(`{"name":"bench","os":"linux","cpu":2,"memory_mb":1024,"power_state":"stopped","disks":[{"name":"os","role":"os","file":"os.raw"}]}`), 0o644); err != nil {
		return err
	}
	drop := &cacheDropper{log: log}
	var rows []row

	// Physical references; the cold read again at the end, since the
	// machine is shared and its disk's speed varies.
	cold, err := coldReadRow(ctx, exe, w, drop)
	if err != nil {
		return err
	}
	rows = append(rows, cold)
	chunks, err := sample(w.Base, 256)
	if err != nil {
		return err
	}
	rows = append(rows, references(chunks, w.Allocated)...)
	chunks = nil

	var m *minio
	if bin := findMinio(minioBin); bin != "" {
		if m, err = startMinio(ctx, bin, filepath.Join(runDir, "minio")); err != nil {
			fmt.Fprintf(log, "warning: no MinIO rows: %v\n", err)
		} else {
			defer m.stop()
		}
	} else {
		fmt.Fprintln(log, "warning: no MinIO rows: bin/minio is missing (make tools)")
	}
	e.minio = m
	for _, t := range tools(e, m, all) {
		name := t.tool.name()
		if only != "" && !strings.Contains(","+only+",", ","+name+",") {
			continue
		}
		if bin, _, _ := strings.Cut(name, " "); bin == "restic" || bin == "borg" {
			if _, err := exec.LookPath(bin); err != nil {
				fmt.Fprintf(log, "warning: no %s rows: %s is not installed (make deps)\n", name, bin)
				continue
			}
		}
		fmt.Fprintf(log, "%s ...\n", name)
		rs, err := runTool(ctx, e, w, t, drop)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, rs...)
	}
	if !noE2E && (only == "" || strings.Contains(only, "e2e")) {
		fmt.Fprintln(log, "vmvault e2e (CLI + dev server + worker) ...")
		rs, err := runE2E(ctx, e, w, drop)
		if err != nil {
			fmt.Fprintf(log, "warning: no end-to-end rows: %v\n", err)
		}
		rows = append(rows, rs...)
	}
	if cold, err := coldReadRow(ctx, exe, w, drop); err == nil {
		cold.Tool = "cold read (again)"
		rows = append(rows, cold)
	}
	ratios(rows)

	loadAfter := loadAvg()
	fmt.Printf("\nvmvault vs restic %s and borg %s: %s, %d cores, %s, load average %s at start, %s at end; image %d GiB, %d MiB allocated (Debian %d MiB, Go toolchain %d MiB, random %d MiB); vmvault via its library API (images platform + vault, no Temporal), each step a separate process; caches dropped: %v\n\n",
		version("restic", "version"), version("borg", "--version"), cpuModel(), runtime.NumCPU(), runtime.GOOS, loadBefore, loadAfter,
		diskSize>>30, w.Allocated>>20, w.DebianTree>>20, w.Toolchain>>20, randomBytes>>20, drop.failed == nil)
	printTable(os.Stdout, rows)
	targets(os.Stdout, rows, w.Changed1)
	fmt.Printf("\nbench ran in %s\n", time.Since(began).Round(time.Second))
	if path := os.Getenv("BENCH_JSON"); path != "" {
		meta := map[string]any{"cpu": cpuModel(), "cores": runtime.NumCPU(), "allocated": w.Allocated, "changed1": w.Changed1, "changed5": w.Changed5, "caches_dropped": drop.failed == nil, "time": began.UTC(), "load_start": loadBefore, "load_end": loadAfter}
		if err := writeJSON(path, meta, rows); err != nil {
			return err
		}
	}
	return nil
}

// entry is a tool and whether it runs every step or only full, 1% and
// restore (the variants that choose vmvault's defaults).
type entry struct {
	tool  tool
	short bool
}

// coldReadRow reads the base image's allocated extents after dropping
// caches, in a child process.
func coldReadRow(ctx context.Context, exe string, w *workload, drop *cacheDropper) (row, error) {
	drop.drop()
	u, err := measured(ctx, execSelf(ctx, exe, fmt.Sprintf(`{"op":"read","image":%q}`, w.Base)))
	if err != nil {
		return row{}, err
	}
	r := rowOf(u)
	r.Step, r.Tool, r.Note = "reference", "cold read", fmt.Sprintf("allocated extents, 1 thread, 4 MiB reads, %.0f MiB/s", float64(w.Allocated)/mib/r.Wall)
	return r, nil
}

// tools lists what runs, in order: vmvault with its defaults, restic,
// borg, the same on MinIO, then vmvault's variants.
func tools(e env, m *minio, all bool) []entry {
	vv := func(label string, req stepReq, short bool) entry {
		if req.S3 == nil {
			req.FSDir = filepath.Join(e.work, strings.ReplaceAll(label, " ", "-"))
		}
		return entry{&vmvaultTool{env: e, label: label, req: req}, short}
	}
	ts := []entry{
		vv("vmvault fs", stepReq{}, false),
		{tool: &resticTool{env: e, label: "restic fs", repo: filepath.Join(e.work, "restic")}},
		{tool: &borgTool{env: e, label: "borg fs", repo: filepath.Join(e.work, "borg")}},
	}
	if m != nil {
		ts = append(ts, vv("vmvault minio", stepReq{S3: m.config("vmvault")}, false))
		if all {
			ts = append(ts, entry{tool: &resticTool{env: e, label: "restic minio", s3: m.config("restic")}})
		}
	}
	return append(ts,
		vv("vmvault fs 1M", stepReq{BlockSize: mib}, !all),
		vv("vmvault fs 256K", stepReq{BlockSize: 256 * kib}, !all),
		vv("vmvault fs 4M", stepReq{BlockSize: 4 * mib}, !all),
		vv("vmvault fs zstd", stepReq{Compression: vault.CompressionZstd}, !all),
		vv("vmvault fs pack 64M", stepReq{PackSize: 64 * mib}, !all),
	)
}

// runTool runs one tool through the steps.
func runTool(ctx context.Context, e env, w *workload, en entry, drop *cacheDropper) ([]row, error) {
	t := en.tool
	if err := t.init(ctx); err != nil {
		return nil, err
	}
	steps := []struct {
		name, image string
		changed     int64
	}{
		{"full", w.Base, 0},
		{"incr 1%", w.Churn1, w.Changed1},
		{"incr 5%", w.Churn5, w.Changed5},
		{"no change", "", 0},
	}
	var rows []row
	if en.short {
		steps = steps[:2]
	}
	for _, s := range steps {
		if s.image != "" {
			if err := e.link(s.image); err != nil {
				return nil, err
			}
		}
		before, err := t.stored(ctx)
		if err != nil {
			return nil, err
		}
		drop.drop()
		r, err := t.backup(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		after, err := t.stored(ctx)
		if err != nil {
			return nil, err
		}
		r.Step, r.Tool, r.Changed, r.Stored = s.name, t.name(), s.changed, after-before
		rows = append(rows, r)
	}
	out, err := os.MkdirTemp(e.work, "restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	drop.drop()
	r, err := t.restore(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	r.Step, r.Tool = "restore", t.name()
	return append(rows, r), nil
}

// link makes the VM's disk the given image (a hard link: a new inode, as
// a changed file would have for restic's and borg's file caches).
func (e env) link(image string) error {
	disk := filepath.Join(e.vmRoot, "bench", "os.raw")
	os.Remove(disk)
	return os.Link(image, disk)
}

func execSelf(ctx context.Context, exe, arg string) *exec.Cmd {
	return exec.CommandContext(ctx, exe, childArg, arg)
}

// loadAvg is the 1-minute load average: the machine may be shared.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// version is the first line a peer prints about its version.
func version(name string, arg string) string {
	out, err := exec.Command(name, arg).Output()
	if err != nil {
		return "(missing)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
