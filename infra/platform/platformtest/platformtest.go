package platformtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/platform"
)

// Chunk is data at an offset of a disk.
type Chunk struct {
	Offset int64
	Data   []byte
}

// DiskSpec is a disk the fixture creates: Size bytes, zero except Chunks.
type DiskSpec struct {
	Name   string
	Role   platform.DiskRole
	LUN    int
	Size   int64
	Chunks []Chunk
}

// VMSpec is a VM the fixture creates, stopped.
type VMSpec struct {
	Name     string
	OS       platform.OSType
	CPUs     int
	MemoryMB int
	Disks    []DiskSpec
}

// Fixture prepares VMs for the suite outside the platform under test. Each
// method fails the test (t.Fatal) when it cannot do its job.
type Fixture interface {
	// MakeVM creates a stopped VM. Disk bytes outside the chunks must be
	// left unallocated where the storage allows, so that the suite can
	// check that reads skip holes.
	MakeVM(t testing.TB, vm VMSpec)
	// WriteDisk writes into a disk of a stopped VM behind the platform's
	// back, as another program would.
	WriteDisk(t testing.TB, vm, disk string, off int64, data []byte)
	// HoldDiskWriter makes a disk look held open for writing by another
	// process (for image files: a QEMU-style write lock, see imagelock)
	// until release is called.
	HoldDiskWriter(t testing.TB, vm, disk string) (release func())
	// SetRunning marks a VM running or stopped, as starting or stopping
	// it outside the platform would.
	SetRunning(t testing.TB, vm string, running bool)
	// ReadKept returns the content of a replaced disk kept by a commit
	// (CommitResult.Kept[disk] is kept).
	ReadKept(t testing.TB, vm, kept string) []byte
}

const mib = 1 << 20

// Run runs the conformance suite against p. VM names it uses start with "pt-".
func Run(t *testing.T, p platform.Platform, fx Fixture) {
	t.Run("DescribeAndList", func(t *testing.T) { testDescribeAndList(t, p, fx) })
	t.Run("UnknownVM", func(t *testing.T) { testUnknownVM(t, p) })
	t.Run("SnapshotReadBack", func(t *testing.T) { testSnapshotReadBack(t, p, fx) })
	t.Run("BusyDiskRefused", func(t *testing.T) { testBusyDisk(t, p, fx) })
	t.Run("ChangedDiskDetected", func(t *testing.T) { testChangedDisk(t, p, fx) })
	t.Run("NewVMRestore", func(t *testing.T) { testNewVMRestore(t, p, fx) })
	t.Run("ReplaceKeepsOldDisk", func(t *testing.T) { testReplace(t, p, fx) })
	t.Run("AbortLeavesTargetsAsTheyWere", func(t *testing.T) { testAbort(t, p, fx) })
	t.Run("StageResumes", func(t *testing.T) { testResume(t, p, fx) })
	t.Run("CommitRefused", func(t *testing.T) { testCommitRefused(t, p, fx) })
}

// random returns n reproducible pseudo-random bytes.
func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x766d7661756c74))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// standardVM has an os disk full of data, a sparse data disk with a 64 MiB
// hole between two 1 MiB chunks, a small second data disk and a temp disk.
func standardVM(name string) VMSpec {
	return VMSpec{
		Name: name, OS: platform.OSLinux, CPUs: 2, MemoryMB: 2048,
		Disks: []DiskSpec{
			{Name: "os", Role: platform.DiskOS, Size: 4 * mib, Chunks: []Chunk{{0, random(1, 4*mib)}}},
			{Name: "data0", Role: platform.DiskData, LUN: 0, Size: 66 * mib, Chunks: []Chunk{
				{0, random(2, mib)},
				{65 * mib, random(3, mib)},
			}},
			{Name: "data1", Role: platform.DiskData, LUN: 3, Size: 3*mib + 4096, Chunks: []Chunk{
				{12345, []byte("vmvault conformance")},
				{3 * mib, random(4, 4096)},
			}},
			{Name: "scratch", Role: platform.DiskTemp, Size: 2 * mib, Chunks: []Chunk{{0, random(5, 4096)}}},
		},
	}
}

func (d DiskSpec) expected(off int64, n int) []byte {
	out := make([]byte, n)
	for _, c := range d.Chunks {
		lo, hi := max(off, c.Offset), min(off+int64(n), c.Offset+int64(len(c.Data)))
		if lo < hi {
			copy(out[lo-off:hi-off], c.Data[lo-c.Offset:hi-c.Offset])
		}
	}
	return out
}

func checkDescribed(t *testing.T, got platform.VM, want VMSpec) {
	t.Helper()
	if got.Name != want.Name || got.OS != want.OS || got.CPUs != want.CPUs || got.MemoryMB != want.MemoryMB {
		t.Errorf("vm %q: got name %q os %q cpu %d memory %d, want %q %q %d %d",
			want.Name, got.Name, got.OS, got.CPUs, got.MemoryMB, want.Name, want.OS, want.CPUs, want.MemoryMB)
	}
	if got.Power != platform.PowerStopped {
		t.Errorf("vm %q: power %q, want stopped", want.Name, got.Power)
	}
	if len(got.Disks) != len(want.Disks) {
		t.Fatalf("vm %q: %d disks, want %d", want.Name, len(got.Disks), len(want.Disks))
	}
	for _, wd := range want.Disks {
		i := slices.IndexFunc(got.Disks, func(d platform.Disk) bool { return d.Name == wd.Name })
		if i < 0 {
			t.Errorf("vm %q: no disk %q", want.Name, wd.Name)
			continue
		}
		gd := got.Disks[i]
		if gd.Role != wd.Role || gd.SizeBytes != wd.Size || (wd.Role == platform.DiskData && gd.LUN != wd.LUN) {
			t.Errorf("vm %q disk %q: got role %q lun %d size %d, want %q %d %d", want.Name, wd.Name, gd.Role, gd.LUN, gd.SizeBytes, wd.Role, wd.LUN, wd.Size)
		}
	}
}

func testDescribeAndList(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	a, b := standardVM("pt-list-a"), standardVM("pt-list-b")
	b.OS, b.CPUs, b.MemoryMB = platform.OSWindows, 8, 16384
	fx.MakeVM(t, a)
	fx.MakeVM(t, b)
	for _, spec := range []VMSpec{a, b} {
		vm, err := p.DescribeVM(ctx, spec.Name)
		if err != nil {
			t.Fatalf("DescribeVM(%q): %v", spec.Name, err)
		}
		checkDescribed(t, vm, spec)
	}
	vms, err := p.ListVMs(ctx)
	if err != nil {
		t.Fatalf("ListVMs: %v", err)
	}
	for _, spec := range []VMSpec{a, b} {
		i := slices.IndexFunc(vms, func(vm platform.VM) bool { return vm.Name == spec.Name })
		if i < 0 {
			t.Errorf("ListVMs does not list %q", spec.Name)
			continue
		}
		checkDescribed(t, vms[i], spec)
	}
}

func testUnknownVM(t *testing.T, p platform.Platform) {
	ctx := context.Background()
	const name = "pt-no-such-vm"
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, platform.ErrVMNotFound) {
			t.Errorf("%s: got %v, want ErrVMNotFound", op, err)
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the vm", op, err)
		}
	}
	_, err := p.DescribeVM(ctx, name)
	check("DescribeVM", err)
	_, err = p.CreateSnapshot(ctx, name, platform.SnapshotRequest{ID: "pt-snap"})
	check("CreateSnapshot", err)
	_, err = p.StageDisk(ctx, name, "os", mib, "pt-stage")
	check("StageDisk", err)
	_, err = p.CommitRestore(ctx, name, "pt-stage", platform.CommitOptions{})
	check("CommitRestore", err)
	if err := p.AbortRestore(ctx, name, "pt-stage"); err != nil {
		t.Errorf("AbortRestore of an unknown vm: %v, want nothing to do", err)
	}
	_, err = p.DescribeVM(ctx, "../"+name)
	if !errors.Is(err, platform.ErrVMNotFound) {
		t.Errorf("DescribeVM of a path: got %v, want ErrVMNotFound", err)
	}
}

func snapshot(t *testing.T, p platform.Platform, vm, id string) platform.Snapshot {
	t.Helper()
	snap, err := p.CreateSnapshot(context.Background(), vm, platform.SnapshotRequest{ID: id, Consistency: platform.AppConsistent})
	if err != nil {
		t.Fatalf("CreateSnapshot(%q): %v", vm, err)
	}
	if snap.ID != id || snap.VM != vm {
		t.Errorf("snapshot is %q of %q, want %q of %q", snap.ID, snap.VM, id, vm)
	}
	switch snap.Consistency {
	case platform.AppConsistent, platform.FileConsistent, platform.CrashConsistent:
	default:
		t.Errorf("snapshot consistency %q", snap.Consistency)
	}
	return snap
}

func open(t *testing.T, p platform.Platform, snap platform.Snapshot, disk string) platform.DiskReader {
	t.Helper()
	r, err := p.OpenDisk(context.Background(), snap, disk)
	if err != nil {
		t.Fatalf("OpenDisk(%q, %q): %v", snap.VM, disk, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// checkDisk reads the whole disk through concurrent ReadAt calls and checks
// every byte, then checks DataExtents against the content.
func checkDisk(t *testing.T, r platform.DiskReader, d DiskSpec) {
	t.Helper()
	ctx := context.Background()
	if r.Size() != d.Size {
		t.Fatalf("disk %q: Size %d, want %d", d.Name, r.Size(), d.Size)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	offsets := make(chan int64)
	for range 4 {
		wg.Go(func() {
			buf := make([]byte, mib)
			for off := range offsets {
				n := int(min(int64(len(buf)), d.Size-off))
				got, err := r.ReadAt(buf[:n], off)
				var e error
				if err != nil || got != n {
					e = fmt.Errorf("ReadAt(%d, %d) = %d, %v", off, n, got, err)
				} else if !bytes.Equal(buf[:n], d.expected(off, n)) {
					e = fmt.Errorf("bytes at %d+%d differ from what was written", off, n)
				}
				if e != nil {
					mu.Lock()
					errs = append(errs, e)
					mu.Unlock()
				}
			}
		})
	}
	for off := int64(0); off < d.Size; off += mib {
		offsets <- off
	}
	close(offsets)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("disk %q: %v", d.Name, err)
	}
	if n, err := r.ReadAt(make([]byte, 10), d.Size); n != 0 || err == nil {
		t.Errorf("disk %q: ReadAt at the end = %d, %v; want 0 and an error (io.EOF)", d.Name, n, err)
	}

	exts, err := r.DataExtents(ctx)
	if err != nil {
		t.Fatalf("disk %q: DataExtents: %v", d.Name, err)
	}
	var prevEnd int64
	for _, e := range exts {
		if e.Length <= 0 || e.Offset < prevEnd || e.Offset+e.Length > d.Size {
			t.Fatalf("disk %q: bad extents (unsorted, overlapping, empty or beyond %d): %v", d.Name, d.Size, exts)
		}
		prevEnd = e.Offset + e.Length
	}
	covered := func(off int64) bool {
		_, found := slices.BinarySearchFunc(exts, off, func(e extent.Extent, off int64) int {
			switch {
			case e.Offset+e.Length <= off:
				return -1
			case e.Offset > off:
				return 1
			}
			return 0
		})
		return found
	}
	for _, c := range d.Chunks {
		for i, b := range c.Data {
			if off := c.Offset + int64(i); b != 0 && !covered(off) {
				t.Fatalf("disk %q: nonzero byte at %d is outside DataExtents %v", d.Name, off, exts)
			}
		}
	}
}

// dataIn is how many bytes of extents lie in [lo, hi).
func dataIn(exts []extent.Extent, lo, hi int64) int64 {
	var n int64
	for _, e := range exts {
		a, b := max(lo, e.Offset), min(hi, e.Offset+e.Length)
		if a < b {
			n += b - a
		}
	}
	return n
}

func checkHoleSkipped(t *testing.T, r platform.DiskReader, disk string, lo, hi int64) {
	t.Helper()
	exts, err := r.DataExtents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Allow a little slack for file systems that allocate around writes.
	if n := dataIn(exts, lo, hi); n > (hi-lo)/8 {
		t.Errorf("disk %q: DataExtents %v cover %d bytes of the hole [%d, %d)", disk, exts, n, lo, hi)
	}
}

func testSnapshotReadBack(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	spec := standardVM("pt-read")
	fx.MakeVM(t, spec)
	snap := snapshot(t, p, spec.Name, "pt-read-1")
	again := snapshot(t, p, spec.Name, "pt-read-1") // a retried request
	if again.Consistency != snap.Consistency {
		t.Errorf("retried snapshot: consistency %q, then %q", snap.Consistency, again.Consistency)
	}
	for _, d := range spec.Disks {
		if d.Role == platform.DiskTemp {
			if r, err := p.OpenDisk(ctx, snap, d.Name); err == nil {
				r.Close()
				t.Errorf("OpenDisk of temp disk %q succeeded; temp disks are never backed up", d.Name)
			}
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			r := open(t, p, snap, d.Name)
			checkDisk(t, r, d)
			if err := r.Verify(ctx); err != nil {
				t.Errorf("Verify of an unchanged disk: %v", err)
			}
			if _, _, err := r.ChangedExtents(ctx, ""); err != nil && !errors.Is(err, platform.ErrNotSupported) {
				t.Errorf("ChangedExtents without a base: %v", err)
			}
			// The retried request's snapshot reads the same.
			r2 := open(t, p, again, d.Name)
			checkDisk(t, r2, d)
		})
	}
	r := open(t, p, snap, "data0")
	checkHoleSkipped(t, r, "data0", mib, 65*mib)

	if r, err := p.OpenDisk(ctx, snap, "pt-no-such-disk"); err == nil {
		r.Close()
		t.Error("OpenDisk of an unknown disk succeeded")
	}
	for i := range 2 {
		if err := p.DeleteSnapshot(ctx, snap); err != nil {
			t.Errorf("DeleteSnapshot #%d: %v", i+1, err)
		}
	}
}

func testBusyDisk(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	spec := standardVM("pt-busy")
	fx.MakeVM(t, spec)
	busy := func(op string, err error, disk string) {
		t.Helper()
		if !errors.Is(err, platform.ErrDiskBusy) {
			t.Fatalf("%s with %q held for writing: got %v, want ErrDiskBusy", op, disk, err)
		}
		if msg := err.Error(); !strings.Contains(msg, spec.Name) || !strings.Contains(msg, disk) {
			t.Errorf("%s: error %q does not name vm %q and disk %q", op, msg, spec.Name, disk)
		}
		t.Logf("%s: %v", op, err)
	}

	release := fx.HoldDiskWriter(t, "pt-busy", "data1")
	_, err := p.CreateSnapshot(ctx, spec.Name, platform.SnapshotRequest{ID: "pt-busy-1"})
	busy("CreateSnapshot", err, "data1")
	release()

	snap := snapshot(t, p, spec.Name, "pt-busy-2")
	release = fx.HoldDiskWriter(t, "pt-busy", "os")
	_, err = p.OpenDisk(ctx, snap, "os")
	busy("OpenDisk", err, "os")
	checkDisk(t, open(t, p, snap, "data1"), spec.Disks[2]) // other disks still read
	release()
	open(t, p, snap, "os")

}

func testChangedDisk(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	spec := standardVM("pt-changed")
	fx.MakeVM(t, spec)
	snap := snapshot(t, p, spec.Name, "pt-changed-1")
	r := open(t, p, snap, "os")
	if _, err := r.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx); err != nil {
		t.Fatalf("Verify before the change: %v", err)
	}
	fx.WriteDisk(t, spec.Name, "os", 8192, []byte("changed behind the backup's back"))
	err := r.Verify(ctx)
	if !errors.Is(err, platform.ErrDiskChanged) {
		t.Fatalf("Verify after the disk changed: got %v, want ErrDiskChanged", err)
	}
	if !strings.Contains(err.Error(), `"os"`) {
		t.Errorf("error %q does not name the disk", err)
	}
	t.Logf("Verify: %v", err)
	if r, err := p.OpenDisk(ctx, snap, "os"); !errors.Is(err, platform.ErrDiskChanged) {
		if err == nil {
			r.Close()
		}
		t.Errorf("OpenDisk after the disk changed: got %v, want ErrDiskChanged", err)
	}
	// Unchanged disks of the same snapshot still read.
	checkDisk(t, open(t, p, snap, "data1"), spec.Disks[2])
}
