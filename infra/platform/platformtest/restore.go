package platformtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vmvault/vmvault/infra/platform"
)

// stageDisk stages d of vm with the chunks written in parallel, as a
// restore does, and closes it.
func stageDisk(t *testing.T, p platform.Platform, vm string, d DiskSpec, stage platform.RestoreStage) {
	t.Helper()
	w, err := p.StageDisk(context.Background(), vm, d.Name, d.Size, stage)
	if err != nil {
		t.Fatalf("StageDisk(%q, %q): %v", vm, d.Name, err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(d.Chunks))
	for i, c := range d.Chunks {
		wg.Go(func() {
			n, err := w.WriteAt(c.Data, c.Offset)
			if err == nil && n != len(c.Data) {
				err = fmt.Errorf("short write %d of %d", n, len(c.Data))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("disk %q: WriteAt: %v", d.Name, err)
	}
	if _, err := w.WriteAt([]byte{1}, d.Size); err == nil {
		t.Errorf("disk %q: a write beyond the size was accepted", d.Name)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("disk %q: Close: %v", d.Name, err)
	}
}

// hashes reads every backed-up disk of vm through a snapshot.
func hashes(t *testing.T, p platform.Platform, vm string) map[string][32]byte {
	t.Helper()
	ctx := context.Background()
	desc, err := p.DescribeVM(ctx, vm)
	if err != nil {
		t.Fatalf("DescribeVM(%q): %v", vm, err)
	}
	snap := snapshot(t, p, vm, "pt-hash")
	out := map[string][32]byte{}
	for _, d := range desc.Disks {
		if d.Role == platform.DiskTemp {
			continue
		}
		r := open(t, p, snap, d.Name)
		h := sha256.New()
		buf := make([]byte, mib)
		for off := int64(0); off < r.Size(); off += mib {
			n := int(min(mib, r.Size()-off))
			if _, err := r.ReadAt(buf[:n], off); err != nil {
				t.Fatalf("read %q disk %q at %d: %v", vm, d.Name, off, err)
			}
			h.Write(buf[:n])
		}
		r.Close()
		out[d.Name] = [32]byte(h.Sum(nil))
	}
	return out
}

func sameHashes(t *testing.T, what string, before, after map[string][32]byte) {
	t.Helper()
	for d, h := range before {
		if after[d] != h {
			t.Errorf("%s: disk %q changed", what, d)
		}
	}
}

func testNewVMRestore(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	const stage = platform.RestoreStage("pt-job/new 1")
	spec := VMSpec{
		Name: "pt-created", OS: platform.OSWindows, CPUs: 4, MemoryMB: 8192,
		Disks: []DiskSpec{
			{Name: "os", Role: platform.DiskOS, Size: 8 * mib, Chunks: []Chunk{{0, random(10, 8*mib)}}},
			{Name: "data0", Role: platform.DiskData, LUN: 0, Size: 70 * mib, Chunks: []Chunk{
				{0, random(11, 2*mib)},
				{69 * mib, random(12, mib)},
			}},
			{Name: "data1", Role: platform.DiskData, LUN: 7, Size: mib, Chunks: []Chunk{{4096, random(13, 4096)}}},
			{Name: "temp", Role: platform.DiskTemp, Size: 2 * mib},
		},
	}
	in := platform.VM{Name: spec.Name, OS: spec.OS, CPUs: spec.CPUs, MemoryMB: spec.MemoryMB}
	for _, d := range spec.Disks {
		in.Disks = append(in.Disks, platform.Disk{Name: d.Name, Role: d.Role, LUN: d.LUN, SizeBytes: d.Size})
	}
	prepared, err := p.PrepareNewVM(ctx, in, stage)
	if err != nil {
		t.Fatalf("PrepareNewVM: %v", err)
	}
	checkDescribed(t, prepared, spec)
	again, err := p.PrepareNewVM(ctx, in, stage)
	if err != nil {
		t.Fatalf("PrepareNewVM retried: %v", err)
	}
	checkDescribed(t, again, spec)
	if _, err := p.PrepareNewVM(ctx, in, "pt-other-job"); !errors.Is(err, platform.ErrVMExists) {
		t.Fatalf("PrepareNewVM by another restore: got %v, want ErrVMExists", err)
	}
	fx.MakeVM(t, standardVM("pt-existing"))
	if _, err := p.PrepareNewVM(ctx, platform.VM{Name: "pt-existing", OS: platform.OSLinux, Disks: in.Disks}, stage); !errors.Is(err, platform.ErrVMExists) {
		t.Fatalf("PrepareNewVM over a vm: got %v, want ErrVMExists", err)
	}
	invisible := func(when string) {
		t.Helper()
		if _, err := p.DescribeVM(ctx, spec.Name); !errors.Is(err, platform.ErrVMNotFound) {
			t.Errorf("DescribeVM %s: got %v, want ErrVMNotFound", when, err)
		}
		vms, _ := p.ListVMs(ctx)
		for _, vm := range vms {
			if vm.Name == spec.Name {
				t.Errorf("ListVMs lists %q %s", spec.Name, when)
			}
		}
	}
	invisible("after PrepareNewVM")
	for _, d := range spec.Disks[:2] {
		stageDisk(t, p, spec.Name, d, stage)
	}
	// Committing before every disk of a new VM is staged fails, changing
	// nothing.
	if _, err := p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{}); err == nil {
		t.Fatal("CommitRestore of a new vm with unstaged disks succeeded")
	}
	invisible("after a refused commit")
	for _, d := range spec.Disks[2:] {
		stageDisk(t, p, spec.Name, d, stage)
	}
	invisible("with every disk staged")
	sizes := map[string]int64{}
	for _, d := range spec.Disks {
		sizes[d.Name] = d.Size
	}
	res, err := p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{Sizes: sizes})
	if err != nil {
		t.Fatalf("CommitRestore: %v", err)
	}
	checkDescribed(t, res.VM, spec)
	if len(res.Kept) != 0 {
		t.Errorf("a new vm kept replaced disks: %v", res.Kept)
	}
	vm, err := p.DescribeVM(ctx, spec.Name)
	if err != nil {
		t.Fatalf("DescribeVM of a restored vm: %v", err)
	}
	checkDescribed(t, vm, spec)
	if _, err := p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{Sizes: sizes}); err != nil {
		t.Errorf("CommitRestore retried after success: %v", err)
	}
	if err := p.AbortRestore(ctx, spec.Name, stage); err != nil {
		t.Errorf("AbortRestore after the commit: %v", err)
	}
	snap := snapshot(t, p, spec.Name, "pt-created-1")
	for _, d := range spec.Disks[:3] {
		checkDisk(t, open(t, p, snap, d.Name), d)
	}
	checkHoleSkipped(t, open(t, p, snap, "data0"), "data0", 2*mib, 69*mib)
	if _, err := p.PrepareNewVM(ctx, in, stage); !errors.Is(err, platform.ErrVMExists) {
		t.Errorf("PrepareNewVM of a committed vm: got %v, want ErrVMExists", err)
	}

	// A prepared VM that is aborted is gone, its name free again.
	const gone = "pt-aborted-new"
	in.Name = gone
	if _, err := p.PrepareNewVM(ctx, in, stage); err != nil {
		t.Fatal(err)
	}
	stageDisk(t, p, gone, spec.Disks[2], stage)
	if err := p.AbortRestore(ctx, gone, "pt-other-job"); err != nil {
		t.Fatalf("AbortRestore by another stage: %v", err)
	}
	if _, err := p.PrepareNewVM(ctx, in, "pt-other-job"); !errors.Is(err, platform.ErrVMExists) {
		t.Fatalf("another stage's abort freed the prepared vm: %v", err)
	}
	for i := range 2 {
		if err := p.AbortRestore(ctx, gone, stage); err != nil {
			t.Fatalf("AbortRestore #%d: %v", i+1, err)
		}
	}
	if _, err := p.PrepareNewVM(ctx, in, "pt-other-job"); err != nil {
		t.Fatalf("PrepareNewVM after abort: %v", err)
	}
	p.AbortRestore(ctx, gone, "pt-other-job")
}

func testReplace(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	spec := standardVM("pt-replace")
	fx.MakeVM(t, spec)
	before := hashes(t, p, spec.Name)
	const stage = platform.RestoreStage("pt-job/replace")
	// data1 comes back larger with other content; os is replaced too.
	newData1 := DiskSpec{Name: "data1", Role: platform.DiskData, LUN: 3, Size: 2 * mib, Chunks: []Chunk{{2*mib - 3, []byte("end")}}}
	newOS := DiskSpec{Name: "os", Role: platform.DiskOS, Size: 4 * mib, Chunks: []Chunk{{mib, random(20, mib)}}}
	stageDisk(t, p, spec.Name, newData1, stage)
	stageDisk(t, p, spec.Name, newOS, stage)
	sameHashes(t, "after staging", before, hashes(t, p, spec.Name))
	res, err := p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{Sizes: map[string]int64{"data1": 2 * mib, "os": 4 * mib}})
	if err != nil {
		t.Fatalf("CommitRestore: %v", err)
	}
	want := spec
	want.Disks = []DiskSpec{newOS, spec.Disks[1], newData1, spec.Disks[3]}
	checkDescribed(t, res.VM, want)
	vm, err := p.DescribeVM(ctx, spec.Name)
	if err != nil {
		t.Fatalf("DescribeVM after the commit: %v", err)
	}
	checkDescribed(t, vm, want)
	snap := snapshot(t, p, spec.Name, "pt-replace-1")
	checkDisk(t, open(t, p, snap, "data1"), newData1)
	checkDisk(t, open(t, p, snap, "os"), newOS)
	checkDisk(t, open(t, p, snap, "data0"), spec.Disks[1])
	if len(res.Kept) != 2 {
		t.Fatalf("Kept %v, want the os and data1 disks", res.Kept)
	}
	for _, d := range []DiskSpec{spec.Disks[0], spec.Disks[2]} {
		kept, ok := res.Kept[d.Name]
		if !ok {
			t.Errorf("disk %q not kept", d.Name)
			continue
		}
		got := fx.ReadKept(t, spec.Name, kept)
		if int64(len(got)) != d.Size || !bytes.Equal(got, d.expected(0, int(d.Size))) {
			t.Errorf("kept disk %q (%s) is not the replaced image", d.Name, kept)
		}
	}

	// Told to discard, nothing is kept.
	stageDisk(t, p, spec.Name, newData1, "pt-job/replace-2")
	res, err = p.CommitRestore(ctx, spec.Name, "pt-job/replace-2", platform.CommitOptions{DiscardReplaced: true})
	if err != nil {
		t.Fatalf("CommitRestore discarding: %v", err)
	}
	if len(res.Kept) != 0 {
		t.Errorf("discarding commit kept %v", res.Kept)
	}
}

func testAbort(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	spec := standardVM("pt-abort")
	fx.MakeVM(t, spec)
	before := hashes(t, p, spec.Name)
	const stage = platform.RestoreStage("pt-job/abort")
	stageDisk(t, p, spec.Name, DiskSpec{Name: "os", Size: 4 * mib, Chunks: []Chunk{{0, random(30, mib)}}}, stage)
	// A failed restore stops in the middle of a disk.
	w, err := p.StageDisk(ctx, spec.Name, "data1", 8*mib, stage)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt(random(31, mib), 0)
	w.Close()
	sameHashes(t, "while staged", before, hashes(t, p, spec.Name))
	for i := range 2 {
		if err := p.AbortRestore(ctx, spec.Name, stage); err != nil {
			t.Fatalf("AbortRestore #%d: %v", i+1, err)
		}
	}
	sameHashes(t, "after abort", before, hashes(t, p, spec.Name))
	vm, err := p.DescribeVM(ctx, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	checkDescribed(t, vm, spec)
	// Nothing is left to commit.
	if res, err := p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{Sizes: map[string]int64{"data1": 8 * mib}}); err == nil {
		t.Errorf("CommitRestore after abort succeeded: %+v", res)
	}
	sameHashes(t, "after a commit of nothing", before, hashes(t, p, spec.Name))
}

func testResume(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	spec := standardVM("pt-resume")
	fx.MakeVM(t, spec)
	const stage = platform.RestoreStage("pt-job/resume")
	first, second := random(40, mib), random(41, mib)
	w, err := p.StageDisk(ctx, spec.Name, "data0", 66*mib, stage)
	if err != nil {
		t.Fatal(err)
	}
	if w.Resumed() {
		t.Error("a first StageDisk says Resumed")
	}
	w.WriteAt(first, 0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = p.StageDisk(ctx, spec.Name, "data0", 66*mib, stage)
	if err != nil {
		t.Fatalf("StageDisk retried: %v", err)
	}
	if !w.Resumed() {
		t.Error("a retried StageDisk did not resume")
	}
	w.WriteAt(second, 65*mib)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, p, spec.Name, "pt-resume-1")
	checkDisk(t, open(t, p, snap, "data0"), DiskSpec{Name: "data0", Size: 66 * mib, Chunks: []Chunk{{0, first}, {65 * mib, second}}})
}

func testCommitRefused(t *testing.T, p platform.Platform, fx Fixture) {
	ctx := context.Background()
	spec := standardVM("pt-refused")
	fx.MakeVM(t, spec)
	before := hashes(t, p, spec.Name)
	const stage = platform.RestoreStage("pt-job/refused")
	d := DiskSpec{Name: "data1", Size: mib, Chunks: []Chunk{{0, random(50, 4096)}}}
	stageDisk(t, p, spec.Name, d, stage)
	refused := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", what, err, want)
		}
		if !strings.Contains(err.Error(), spec.Name) {
			t.Errorf("%s: error %q does not name the vm", what, err)
		}
		t.Logf("%s: %v", what, err)
	}

	release := fx.HoldDiskWriter(t, spec.Name, "data1")
	_, err := p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{})
	refused("CommitRestore of a locked disk", err, platform.ErrDiskBusy)
	if !strings.Contains(err.Error(), "data1") {
		t.Errorf("error %q does not name the disk", err)
	}
	release()
	sameHashes(t, "after a refused commit", before, hashes(t, p, spec.Name))

	fx.SetRunning(t, spec.Name, true)
	_, err = p.StageDisk(ctx, spec.Name, "data0", mib, stage)
	refused("StageDisk of a running vm", err, platform.ErrVMRunning)
	_, err = p.CommitRestore(ctx, spec.Name, stage, platform.CommitOptions{})
	refused("CommitRestore of a running vm", err, platform.ErrVMRunning)
	fx.SetRunning(t, spec.Name, false)
	sameHashes(t, "after refused commits", before, hashes(t, p, spec.Name))
	if err := p.AbortRestore(ctx, spec.Name, stage); err != nil {
		t.Fatal(err)
	}
	if _, err := p.StageDisk(ctx, spec.Name, "pt-no-such-disk", mib, stage); err == nil {
		t.Error("StageDisk of an unknown disk succeeded")
	}
}
