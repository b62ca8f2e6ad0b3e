package qemu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/imagelock"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/platformtest"
	"github.com/vmvault/vmvault/infra/platform/qemu"
	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

const mib = 1 << 20

// fixture makes stopped VMs in the inventory: raw sparse images and
// vm.json; "running" is a bare QEMU answering on the VM's QMP socket.
type fixture struct {
	root    string
	mu      sync.Mutex
	running map[string]*qemutest.Process
}

func (f *fixture) MakeVM(t testing.TB, spec platformtest.VMSpec) {
	t.Helper()
	dir := filepath.Join(f.root, spec.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vm := platform.VM{Name: spec.Name, OS: spec.OS, CPUs: spec.CPUs, MemoryMB: spec.MemoryMB}
	for _, d := range spec.Disks {
		file := d.Name + ".raw"
		fh, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		fh.Truncate(d.Size)
		for _, c := range d.Chunks {
			fh.WriteAt(c.Data, c.Offset)
		}
		fh.Close()
		vm.Disks = append(vm.Disks, platform.Disk{Name: d.Name, Role: d.Role, LUN: d.LUN, File: file, Format: "raw", SizeBytes: d.Size})
	}
	writeJSON(t, filepath.Join(dir, "vm.json"), vm)
}

func (f *fixture) diskPath(t testing.TB, vm, disk string) string {
	t.Helper()
	var def platform.VM
	data, err := os.ReadFile(filepath.Join(f.root, vm, "vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(data, &def)
	for _, d := range def.Disks {
		if d.Name == disk {
			return filepath.Join(f.root, vm, d.File)
		}
	}
	t.Fatalf("vm %q has no disk %q", vm, disk)
	return ""
}

func (f *fixture) WriteDisk(t testing.TB, vm, disk string, off int64, data []byte) {
	t.Helper()
	fh, err := os.OpenFile(f.diskPath(t, vm, disk), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) HoldDiskWriter(t testing.TB, vm, disk string) func() {
	t.Helper()
	release, err := imagelock.HoldWriteLock(f.diskPath(t, vm, disk))
	if err != nil {
		t.Fatal(err)
	}
	return func() { release() }
}

func (f *fixture) SetRunning(t testing.TB, vm string, running bool) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.running[vm]; p != nil {
		p.Kill()
		delete(f.running, vm)
	}
	if running {
		f.running[vm] = qemutest.Start(t, filepath.Join(f.root, vm), "-machine", "none")
	}
}

func (f *fixture) ReadKept(t testing.TB, vm, kept string) []byte {
	t.Helper()
	data, err := os.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, _ := json.MarshalIndent(v, "", "  ")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	root := t.TempDir()
	p, err := qemu.New(root)
	if err != nil {
		t.Fatal(err)
	}
	platformtest.Run(t, p, &fixture{root: root, running: map[string]*qemutest.Process{}})
}

func TestBadSettings(t *testing.T) {
	root := t.TempDir()
	fx := &fixture{root: root}
	fx.MakeVM(t, platformtest.VMSpec{Name: "bad", OS: platform.OSLinux, Disks: []platformtest.DiskSpec{{Name: "os", Role: platform.DiskOS, Size: mib}}})
	p, _ := qemu.New(root)
	for field, s := range map[string]string{
		"qmp_socket": `{"qmp_socket": "../elsewhere.sock"}`,
		"nodes.nope": `{"nodes": {"nope": "disk-x"}}`,
		"nodes.os":   `{"nodes": {"os": "1bad node"}}`,
	} {
		os.WriteFile(filepath.Join(root, "bad", qemu.SettingsFile), []byte(s), 0o644)
		_, err := p.DescribeVM(context.Background(), "bad")
		if !errors.Is(err, platform.ErrInvalidVM) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v, want ErrInvalidVM naming %s", s, err, field)
		}
	}
}

// liveVM is a VM with an os disk (raw) and a data disk (qcow2) started by
// QEMU from its inventory entry, without a guest OS.
type liveVM struct {
	root string
	p    platform.Platform
	q    *qemutest.Process
}

// exec runs one QMP command on its own connection: a QMP socket serves one
// client at a time, and the platform needs it too.
func (v *liveVM) exec(t *testing.T, cmd string, args, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, v.q.QMP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Execute(ctx, cmd, args, out); err != nil {
		t.Fatal(err)
	}
}

var osData = bytes.Repeat([]byte("vmvault!"), mib/8) // 1 MiB at 0 and at 2 MiB of the os disk

func newLiveVM(t *testing.T) *liveVM {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make deps installs Debian's qemu-utils)")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "live")
	os.MkdirAll(dir, 0o755)
	f, _ := os.Create(filepath.Join(dir, "os.raw"))
	f.Truncate(16 * mib)
	f.WriteAt(osData, 0)
	f.WriteAt(osData, 2*mib)
	f.Close()
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, "data0.qcow2"), "8M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	writeJSON(t, filepath.Join(dir, "vm.json"), platform.VM{Name: "live", OS: platform.OSLinux, CPUs: 1, MemoryMB: 64, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.raw", Format: "raw"},
		{Name: "data0", Role: platform.DiskData, File: "data0.qcow2", Format: "qcow2"},
	}})
	v := &liveVM{root: root}
	v.p, _ = qemu.New(root)
	v.start(t)
	return v
}

func (v *liveVM) start(t *testing.T) {
	t.Helper()
	args, err := qemu.Args(context.Background(), v.root, "live")
	if err != nil {
		t.Fatal(err)
	}
	v.q = qemutest.StartWith(t, "", filepath.Join(v.root, "live", "qmp.sock"), append([]string{"-machine", "pc", "-S"}, args...)...)
	v.exec(t, "cont", nil, nil)
}

// write writes through the disk's guest device, as the guest would.
func (v *liveVM) write(t *testing.T, disk string, pattern byte, off, n int64) {
	t.Helper()
	var out string
	cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/dev-%s/virtio-backend "write -P 0x%02x %d %d"`, disk, pattern, off, n)
	v.exec(t, "human-monitor-command", map[string]any{"command-line": cmd}, &out)
	if strings.Contains(out, "rror") {
		t.Fatalf("%s: %s", cmd, out)
	}
}

func (v *liveVM) snapshot(t *testing.T, id string) platform.Snapshot {
	t.Helper()
	// No guest OS, so no agent to quiesce: crash-consistent as asked (the
	// agent's absence costs its timeout; the e2e tests cover it).
	s, err := v.p.CreateSnapshot(context.Background(), "live", platform.SnapshotRequest{ID: id, Consistency: platform.CrashConsistent})
	if err != nil {
		t.Fatal(err)
	}
	if s.Consistency != platform.CrashConsistent {
		t.Errorf("consistency %s", s.Consistency)
	}
	t.Cleanup(func() { v.p.DeleteSnapshot(context.Background(), s) })
	return s
}

func (v *liveVM) read(t *testing.T, s platform.Snapshot, disk string, off int64, n int) []byte {
	t.Helper()
	r, err := v.p.OpenDisk(context.Background(), s, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	return buf
}

func (v *liveVM) changed(t *testing.T, s platform.Snapshot, disk string, since platform.Snapshot) ([]extent.Extent, bool) {
	t.Helper()
	r, err := v.p.OpenDisk(context.Background(), s, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ext, ok, err := r.ChangedExtents(context.Background(), since.Token)
	if err != nil {
		t.Fatal(err)
	}
	return ext, ok
}

func sameExtents(a, b []extent.Extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// leftovers lists vmvault's fleecing nodes, exports and jobs in QEMU.
func (v *liveVM) leftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	var exports []struct {
		ID string `json:"id"`
	}
	var jobs []struct {
		Device string `json:"device"`
	}
	v.exec(t, "query-named-block-nodes", map[string]any{"flat": true}, &nodes)
	v.exec(t, "query-block-exports", nil, &exports)
	v.exec(t, "query-block-jobs", nil, &jobs)
	for _, n := range nodes {
		if strings.HasPrefix(n.NodeName, "vvf-") {
			out = append(out, "node "+n.NodeName)
		}
	}
	for _, e := range exports {
		out = append(out, "export "+e.ID)
	}
	for _, j := range jobs {
		out = append(out, "job "+j.Device)
	}
	m, _ := filepath.Glob(filepath.Join(v.root, "live", ".vmvault-fleece-*"))
	for _, f := range m {
		out = append(out, "file "+f)
	}
	return out
}

func TestRunningVMSnapshotIsPointInTime(t *testing.T) {
	start := time.Now()
	v := newLiveVM(t)
	ctx := context.Background()
	vm, err := v.p.DescribeVM(ctx, "live")
	if err != nil || vm.Power != platform.PowerRunning {
		t.Fatalf("DescribeVM: %+v %v", vm, err)
	}
	s1 := v.snapshot(t, "s1")
	t.Logf("notes: %q", s1.Notes)
	v.write(t, "os", 0x5a, mib, 64<<10) // after the snapshot, into a hole
	v.write(t, "os", 0x77, 0, 4096)     // over data written before
	if got := v.read(t, s1, "os", 0, 4096); !bytes.Equal(got, osData[:4096]) {
		t.Error("a write after the snapshot shows in it (os at 0)")
	}
	if got := v.read(t, s1, "os", mib, 64<<10); !bytes.Equal(got, make([]byte, 64<<10)) {
		t.Error("a write after the snapshot shows in it (os at 1M)")
	}
	r, err := v.p.OpenDisk(ctx, s1, "os")
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.DataExtents(ctx)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range data {
		n += e.Length
	}
	if n > 8*mib {
		t.Errorf("data extents of a disk with 2 MiB of data cover %d bytes: %v", n, data)
	}
	for i := range 2 {
		if err := v.p.DeleteSnapshot(ctx, s1); err != nil {
			t.Fatalf("DeleteSnapshot #%d: %v", i+1, err)
		}
	}
	if left := v.leftovers(t); len(left) > 0 {
		t.Errorf("left after DeleteSnapshot: %v", left)
	}
	s2 := v.snapshot(t, "s2")
	if got := v.read(t, s2, "os", 0, 4096); !bytes.Equal(got, bytes.Repeat([]byte{0x77}, 4096)) {
		t.Error("the next snapshot does not show the write")
	}
	t.Logf("took %v under %s", time.Since(start), qemutest.Accel(t))
}

func TestRunningVMChangedBlocks(t *testing.T) {
	start := time.Now()
	v := newLiveVM(t)
	ctx := context.Background()
	s1 := v.snapshot(t, "s1")
	if _, ok := v.changed(t, s1, "os", platform.Snapshot{}); ok {
		t.Error("changed extents without a parent")
	}
	v.write(t, "os", 0x5a, mib, 64<<10)
	v.write(t, "data0", 0x33, 4*mib, 128<<10)
	if err := v.p.DeleteSnapshot(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if err := v.p.(platform.BitmapCommitter).CommitChanges(ctx, s1); err != nil {
		t.Fatal(err)
	}
	s2 := v.snapshot(t, "s2")
	if ext, ok := v.changed(t, s2, "os", s1); !ok || !sameExtents(ext, []extent.Extent{{Offset: mib, Length: 64 << 10}}) {
		t.Errorf("os changed since s1: %v %v, want 1M+64k", ext, ok)
	}
	if ext, ok := v.changed(t, s2, "data0", s1); !ok || !sameExtents(ext, []extent.Extent{{Offset: 4 * mib, Length: 128 << 10}}) {
		t.Errorf("data0 changed since s1: %v %v, want 4M+128k", ext, ok)
	}
	if got := v.read(t, s2, "os", mib, 64<<10); !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, 64<<10)) {
		t.Error("s2 does not read the write")
	}
	// s2's backup fails: nothing committed. The next snapshot still
	// covers every change since s1.
	v.p.DeleteSnapshot(ctx, s2)
	v.write(t, "os", 0x66, 8*mib, 64<<10)
	s3 := v.snapshot(t, "s3")
	if ext, ok := v.changed(t, s3, "os", s1); !ok || !sameExtents(ext, []extent.Extent{{Offset: mib, Length: 64 << 10}, {Offset: 8 * mib, Length: 64 << 10}}) {
		t.Errorf("os changed since s1 (s2 not committed): %v %v", ext, ok)
	}
	if ext, ok := v.changed(t, s3, "os", s2); !ok || !sameExtents(ext, []extent.Extent{{Offset: 8 * mib, Length: 64 << 10}}) {
		t.Errorf("os changed since s2: %v %v", ext, ok)
	}
	if ext, ok := v.changed(t, s3, "data0", s2); !ok || len(ext) != 0 {
		t.Errorf("data0 changed since s2: %v %v, want none", ext, ok)
	}
	v.p.DeleteSnapshot(ctx, s3)
	if err := v.p.(platform.BitmapCommitter).CommitChanges(ctx, s3); err != nil {
		t.Fatal(err)
	}
	// A parent older than the committed point is no longer covered.
	s4 := v.snapshot(t, "s4")
	if _, ok := v.changed(t, s4, "os", s1); ok {
		t.Error("changes since s1 claimed after s3 was committed")
	}
	if ext, ok := v.changed(t, s4, "os", s3); !ok || len(ext) != 0 {
		t.Errorf("changed since s3: %v %v, want none", ext, ok)
	}
	v.p.DeleteSnapshot(ctx, s4)

	// QEMU killed and restarted: the raw disk's bitmap is gone, the
	// qcow2 disk's persistent one inconsistent: both fall back.
	v.q.Kill()
	v.start(t)
	s5 := v.snapshot(t, "s5")
	t.Logf("notes after an unclean restart: %q", s5.Notes)
	for _, d := range []string{"os", "data0"} {
		if ext, ok := v.changed(t, s5, d, s4); ok {
			t.Errorf("disk %s: changed extents %v claimed across a QEMU restart", d, ext)
		}
	}
	// A parent taken while the VM was stopped has no bitmap.
	if _, ok := v.changed(t, s5, "os", platform.Snapshot{Token: `{"v":1,"mode":"stopped"}`}); ok {
		t.Error("changes claimed since a stopped snapshot")
	}
	t.Logf("took %v under %s", time.Since(start), qemutest.Accel(t))
}

func TestRunningVMRestoreRefusedAndRestoredVMStarts(t *testing.T) {
	v := newLiveVM(t)
	ctx := context.Background()
	if _, err := v.p.StageDisk(ctx, "live", "os", mib, "job-1"); !errors.Is(err, platform.ErrVMRunning) {
		t.Fatalf("StageDisk of a running vm: %v", err)
	}
	// A new VM restored from the live one's snapshot starts in QEMU.
	s := v.snapshot(t, "s1")
	in := platform.VM{Name: "copy", OS: platform.OSLinux, CPUs: 1, MemoryMB: 64, Disks: []platform.Disk{{Name: "os", Role: platform.DiskOS, SizeBytes: 16 * mib}}}
	if _, err := v.p.PrepareNewVM(ctx, in, "job-2"); err != nil {
		t.Fatal(err)
	}
	w, err := v.p.StageDisk(ctx, "copy", "os", 16*mib, "job-2")
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt(v.read(t, s, "os", 0, 4*mib), 0)
	w.Close()
	if _, err := v.p.CommitRestore(ctx, "copy", "job-2", platform.CommitOptions{Sizes: map[string]int64{"os": 16 * mib}}); err != nil {
		t.Fatal(err)
	}
	args, err := qemu.Args(ctx, v.root, "copy")
	if err != nil {
		t.Fatal(err)
	}
	qemutest.StartWith(t, "", filepath.Join(v.root, "copy", "qmp.sock"), append([]string{"-machine", "pc"}, args...)...)
	vm, err := v.p.DescribeVM(ctx, "copy")
	if err != nil || vm.Power != platform.PowerRunning {
		t.Fatalf("restored vm: %+v %v", vm, err)
	}
	sc := v.snapshot(t, "c1")
	if got := v.read(t, sc, "os", 2*mib, mib); !bytes.Equal(got, osData) {
		t.Error("restored vm's disk differs")
	}
}
