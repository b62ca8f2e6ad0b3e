// Package vmfixture makes sample VMs for the images platform: an OS disk
// holding a real ext4 file system (mke2fs -d), a data disk with mixed data
// (random, compressible, holes) and a temp disk. The demo and the
// end-to-end tests share it.
package vmfixture

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vmvault/vmvault/infra/platform"
)

const MiB = 1 << 20

// Spec sizes a sample VM.
type Spec struct {
	Name      string
	OSSize    int64 // ext4 image
	DataDisks []int64
	TempSize  int64 // 0: no temp disk
	Seed      uint64
}

// DefaultSpec is the demo's VM: 256 MiB OS disk, one 512 MiB data disk, a 64 MiB temp disk.
func DefaultSpec(name string) Spec {
	return Spec{Name: name, OSSize: 256 * MiB, DataDisks: []int64{512 * MiB}, TempSize: 64 * MiB, Seed: 1}
}

// Create writes the VM folder root/<name> with vm.json and its disks.
func Create(root string, s Spec) (platform.VM, error) {
	dir := filepath.Join(root, s.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return platform.VM{}, err
	}
	r := rand.New(rand.NewPCG(s.Seed, 42))
	vm := platform.VM{Name: s.Name, OS: platform.OSLinux, CPUs: 2, MemoryMB: 2048, Power: platform.PowerStopped}
	if err := makeExt4(filepath.Join(dir, "os.raw"), s.OSSize, r); err != nil {
		return vm, err
	}
	vm.Disks = append(vm.Disks, platform.Disk{Name: "os", Role: platform.DiskOS, File: "os.raw", SizeBytes: s.OSSize})
	for i, size := range s.DataDisks {
		name := fmt.Sprintf("data%d", i)
		if err := makeMixed(filepath.Join(dir, name+".raw"), size, r); err != nil {
			return vm, err
		}
		vm.Disks = append(vm.Disks, platform.Disk{Name: name, Role: platform.DiskData, LUN: i, File: name + ".raw", SizeBytes: size})
	}
	if s.TempSize > 0 {
		p := filepath.Join(dir, "temp.raw")
		if err := writeAt(p, s.TempSize, 0, bytes.Repeat([]byte("scratch "), MiB/8)); err != nil {
			return vm, err
		}
		vm.Disks = append(vm.Disks, platform.Disk{Name: "temp", Role: platform.DiskTemp, File: "temp.raw", SizeBytes: s.TempSize})
	}
	b, err := json.MarshalIndent(vm, "", "  ")
	if err != nil {
		return vm, err
	}
	return vm, os.WriteFile(filepath.Join(dir, "vm.json"), b, 0o644)
}

// makeExt4 builds an ext4 image from a generated directory tree.
func makeExt4(path string, size int64, r *rand.Rand) error {
	src, err := os.MkdirTemp("", "vmfixture-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	files := map[string][]byte{
		"etc/hostname":   []byte("vmvault-sample\n"),
		"etc/os-release": []byte("NAME=\"vmvault sample\"\nID=sample\n"),
	}
	// About a third of the file system is data, whatever its size.
	n := int(min(24, size/MiB/4))
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("var/lib/app/blob%02d.bin", i)] = randBytes(r, MiB)
		files[fmt.Sprintf("usr/share/doc/readme%02d.txt", i)] = bytes.Repeat([]byte(fmt.Sprintf("sample text line %d for vmvault\n", i)), 8192)
	}
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	_ = os.Remove(path)
	cmd := exec.Command(mke2fs(), "-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d", src, path, fmt.Sprintf("%dk", size/1024))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs: %v: %s", err, out)
	}
	return nil
}

func mke2fs() string {
	for _, p := range []string{"/usr/sbin/mke2fs", "/sbin/mke2fs"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "mke2fs"
}

// makeMixed writes random data, compressible text, a hole and more random data.
func makeMixed(path string, size int64, r *rand.Rand) error {
	q := size / 8
	if err := writeAt(path, size, 0, randBytes(r, int(q))); err != nil {
		return err
	}
	if err := writeAt(path, size, q, bytes.Repeat([]byte("compressible vmvault data "), int(q)/26)); err != nil {
		return err
	}
	// q*2 .. q*6 stays a hole
	return writeAt(path, size, 6*q, randBytes(r, int(q)))
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func writeAt(path string, size, off int64, data []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, _ := f.Stat(); st.Size() != size {
		if err := f.Truncate(size); err != nil {
			return err
		}
	}
	if _, err := f.WriteAt(data, off); err != nil {
		return err
	}
	return f.Sync()
}

// Mutate changes n MiB of the VM's first data disk at offset off (MiB) and
// a few bytes of its OS disk, as a day of churn would.
func Mutate(root, name string, offMiB, nMiB int64, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 7))
	dir := filepath.Join(root, name)
	st, err := os.Stat(filepath.Join(dir, "data0.raw"))
	if err != nil {
		return err
	}
	if err := writeAt(filepath.Join(dir, "data0.raw"), st.Size(), offMiB*MiB, randBytes(r, int(nMiB*MiB))); err != nil {
		return err
	}
	os, err := os.Stat(filepath.Join(dir, "os.raw"))
	if err != nil {
		return err
	}
	return writeAt(filepath.Join(dir, "os.raw"), os.Size(), os.Size()*3/4+offMiB*4096, []byte("changed by the sample workload"))
}

// SHA256 hashes a file.
func SHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
