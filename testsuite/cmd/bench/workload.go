package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmvault/vmvault/testsuite/guest"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30

	diskSize    = 4 * gib
	randomBytes = 512 * mib
	// treeTarget is what the files in the image add up to: the Debian
	// root, then toolchain files until the total reaches it, then the
	// incompressible data (~1.1 GiB allocated with the file system's own).
	treeTarget = 1126*mib - randomBytes
	// minToolchain is taken even when the Debian tree alone exceeds the
	// target, so the image always holds some real source and binaries.
	minToolchain = 32 * mib
)

// recipe keys the workload cache: change it whenever the content would.
const recipe = "v3: guest root via debugfs rdump; GOROOT bin+src to 1126 MiB-512 MiB; /srv/data/random.bin 512 MiB chacha8(9,9); mke2fs -d 4G, sparse copy; churn 1% seed 1 then 5% seed 5, 31/32 clustered 16K-4M, 1/32 scattered 4K"

// workload is the cached images and what is known about them.
type workload struct {
	Dir        string `json:"-"`
	Base       string `json:"-"` // the full image
	Churn1     string `json:"-"` // base with 1% churn
	Churn5     string `json:"-"` // churn1 with 5% more churn
	Allocated  int64  `json:"allocated"`
	Changed1   int64  `json:"changed1"` // bytes differing base -> churn1
	Changed5   int64  `json:"changed5"` // bytes differing churn1 -> churn5
	DebianTree int64  `json:"debian_tree"`
	Toolchain  int64  `json:"toolchain"`
	BuildTime  string `json:"build_time"`
}

// benchCacheDir is $VMVAULT_BENCH_CACHE, else ~/.cache/vmvault/bench.
func benchCacheDir() (string, error) {
	if d := os.Getenv("VMVAULT_BENCH_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "vmvault", "bench"), nil
}

// loadWorkload returns the cached workload, building it (and the guest
// image it copies the Debian tree from) when missing.
func loadWorkload(ctx context.Context, log io.Writer) (*workload, error) {
	cache, err := benchCacheDir()
	if err != nil {
		return nil, err
	}
	goroot, err := goRoot()
	if err != nil {
		return nil, err
	}
	gover, _ := os.ReadFile(filepath.Join(goroot, "VERSION"))
	h := sha256.Sum256([]byte(recipe + "|" + guest.Key() + "|" + string(gover)))
	dir := filepath.Join(cache, hex.EncodeToString(h[:6]))
	w := &workload{Dir: dir, Base: filepath.Join(dir, "base.raw"), Churn1: filepath.Join(dir, "churn1.raw"), Churn5: filepath.Join(dir, "churn5.raw")}
	if data, err := os.ReadFile(filepath.Join(dir, "workload.json")); err == nil {
		if err := json.Unmarshal(data, w); err == nil {
			return w, nil
		}
	}
	// One build at a time: a second bench waits and then uses it.
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if data, err := os.ReadFile(filepath.Join(dir, "workload.json")); err == nil && json.Unmarshal(data, w) == nil {
		return w, nil
	}
	gcache, err := guest.CacheDir()
	if err != nil {
		return nil, err
	}
	gp, err := guest.Build(ctx, gcache, log)
	if err != nil {
		return nil, fmt.Errorf("the workload copies the tests' guest (make guest-image): %w", err)
	}
	start := time.Now()
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	t := &workload{Dir: tmp, Base: filepath.Join(tmp, "base.raw"), Churn1: filepath.Join(tmp, "churn1.raw"), Churn5: filepath.Join(tmp, "churn5.raw")}
	if err := t.build(ctx, gp.Rootfs, goroot, log); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("build workload: %w", err)
	}
	w.Allocated, w.Changed1, w.Changed5, w.DebianTree, w.Toolchain = t.Allocated, t.Changed1, t.Changed5, t.DebianTree, t.Toolchain
	w.BuildTime = time.Since(start).Round(time.Second).String()
	data, _ := json.MarshalIndent(w, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "workload.json"), data, 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "workload built in %s into %s\n", w.BuildTime, dir)
	return w, nil
}

func goRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (w *workload) build(ctx context.Context, rootfs, goroot string, log io.Writer) error {
	tree := filepath.Join(w.Dir, "tree")
	fmt.Fprintf(log, "workload: copying the guest's Debian root out of %s (debugfs rdump)\n", rootfs)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	if err := runLogged(ctx, log, "debugfs", "-R", "rdump / "+tree, rootfs); err != nil {
		return err
	}
	var err error
	if w.DebianTree, err = fileBytes(tree); err != nil {
		return err
	}
	budget := max(treeTarget-w.DebianTree, minToolchain)
	fmt.Fprintf(log, "workload: %d MiB of Debian; %d MiB of %s; %d MiB random\n", w.DebianTree>>20, budget>>20, goroot, randomBytes>>20)
	if w.Toolchain, err = copyBudget(goroot, filepath.Join(tree, "usr/local/go"), []string{"bin", "src"}, budget); err != nil {
		return fmt.Errorf("copy toolchain: %w", err)
	}
	if err := writeRandom(filepath.Join(tree, "srv/data/random.bin"), randomBytes); err != nil {
		return err
	}
	fmt.Fprintf(log, "workload: mke2fs -d into a %d GiB sparse image\n", diskSize>>30)
	mkfs := w.Base + ".mkfs"
	if err := runLogged(ctx, log, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "bench", "-d", tree, mkfs, fmt.Sprintf("%dM", diskSize>>20)); err != nil {
		return err
	}
	// mke2fs writes zeroed blocks (inode tables); a sparse copy punches
	// them out, as the churned copies are, so all three have the same holes.
	if err := copySparse(ctx, mkfs, w.Base); err != nil {
		return err
	}
	if err := os.Remove(mkfs); err != nil {
		return err
	}
	if err := os.RemoveAll(tree); err != nil {
		return err
	}
	if w.Allocated, err = allocatedBytes(w.Base); err != nil {
		return err
	}
	fmt.Fprintf(log, "workload: %d MiB allocated; churning 1%% and 5%% copies\n", w.Allocated>>20)
	if err := copySparse(ctx, w.Base, w.Churn1); err != nil {
		return err
	}
	if w.Changed1, err = churn(w.Churn1, diskSize/100, 1); err != nil {
		return err
	}
	if err := copySparse(ctx, w.Churn1, w.Churn5); err != nil {
		return err
	}
	w.Changed5, err = churn(w.Churn5, diskSize*5/100, 5)
	return err
}

// copyBudget copies the regular files of src's subdirs into dst, in
// lexical order, until budget bytes are copied.
func copyBudget(src, dst string, subdirs []string, budget int64) (int64, error) {
	var n int64
	errFull := fmt.Errorf("full")
	for _, sub := range subdirs {
		err := filepath.WalkDir(filepath.Join(src, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			target := filepath.Join(dst, rel)
			if d.IsDir() {
				return os.MkdirAll(target, 0o755)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if n+fi.Size() > budget {
				return errFull
			}
			n += fi.Size()
			return copyFile(p, target, fi.Mode().Perm())
		})
		if err == errFull {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeRandom writes n seeded pseudo-random (incompressible) bytes.
func writeRandom(path string, n int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r := rand.NewChaCha8([32]byte{9, 9})
	buf := make([]byte, 4*mib)
	for off := int64(0); off < n; off += int64(len(buf)) {
		r.Read(buf)
		if _, err := f.Write(buf[:min(int64(len(buf)), n-off)]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func fileBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

func allocatedBytes(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512, nil
}

// copySparse copies an image keeping its holes (a reflink where the file
// system has them).
func copySparse(ctx context.Context, src, dst string) error {
	return runLogged(ctx, io.Discard, "cp", "--sparse=always", "--reflink=auto", src, dst)
}

func runLogged(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	tail := &tailBuf{max: 2048, b: &out}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(log, tail), tail
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}
