package qemu_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/imagelock"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu"
)

func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io", "qemu-nbd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs Debian's qemu-utils)", tool)
		}
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qcow2VM makes a stopped VM "vm" with a qcow2 os disk (64 MiB, 2 MiB and
// 64 KiB written with qemu-io) and a raw data disk.
func qcow2VM(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "vm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "os.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	runTool(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 2M", "-c", "write -P 0xcd 40M 64k", img)
	raw := bytes.Repeat([]byte{0x5a}, mib)
	if err := os.WriteFile(filepath.Join(dir, "data0.raw"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(dir, "vm.json"), platform.VM{Name: "vm", OS: platform.OSLinux, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.qcow2", Format: "qcow2"},
		{Name: "data0", Role: platform.DiskData, File: "data0.raw", Format: "raw"},
	}})
	return dir
}

// readAll reads a whole disk of a snapshot, and its data extents' length.
func readAll(t *testing.T, p platform.Platform, snap platform.Snapshot, disk string) ([]byte, int64) {
	t.Helper()
	ctx := context.Background()
	r, err := p.OpenDisk(ctx, snap, disk)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ext, err := r.DataExtents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	buf := make([]byte, r.Size())
	for _, e := range ext {
		data += e.Length
		if _, err := r.ReadAt(buf[e.Offset:e.Offset+e.Length], e.Offset); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	return buf, data
}

func socketsIn(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".vmvault-nbd-*"))
	return m
}

// A stopped VM's qcow2 disk is read through qemu-nbd: its content is what
// qemu-img reads, holes are not read, QEMU's lock keeps writers out while
// the snapshot exists, a write that ignores the lock is caught, and
// deleting the snapshot (twice) stops qemu-nbd and removes its socket.
func TestStoppedQcow2Snapshot(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	dir := qcow2VM(t, root)
	p, err := qemu.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	snap, err := p.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.Token, `"mode":"qemu-nbd"`) || !strings.Contains(strings.Join(snap.Notes, " "), "qemu-nbd") {
		t.Fatalf("token %s notes %q", snap.Token, snap.Notes)
	}
	want := filepath.Join(t.TempDir(), "want.raw")
	runTool(t, "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", filepath.Join(dir, "os.qcow2"), want)
	wantData, _ := os.ReadFile(want)
	got, data := readAll(t, p, snap, "os")
	if !bytes.Equal(got, wantData) {
		t.Fatal("the os disk read through qemu-nbd differs from qemu-img convert's")
	}
	if data < 2*mib+64<<10 || data > 4*mib {
		t.Fatalf("data extents cover %d bytes, want about the 2 MiB + 64 KiB written (holes are holes)", data)
	}
	if got, _ := readAll(t, p, snap, "data0"); !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, mib)) {
		t.Fatal("the raw disk of the same vm reads wrong")
	}

	// QEMU (here qemu-io) cannot open the image for writing meanwhile.
	out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", "write 0 4k", filepath.Join(dir, "os.qcow2")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "lock") {
		t.Fatalf("qemu-io wrote the image under a snapshot: %v %s", err, out)
	}
	// A writer that ignores the lock is caught by the fingerprint.
	f, _ := os.OpenFile(filepath.Join(dir, "data0.raw"), os.O_WRONLY, 0)
	f.WriteAt([]byte("x"), 10)
	f.Close()
	r, err := p.OpenDisk(ctx, snap, "data0")
	if !errors.Is(err, platform.ErrDiskChanged) {
		t.Fatalf("open after a write: %v, want ErrDiskChanged", err)
	}
	if r != nil {
		r.Close()
	}

	for i := 0; i < 2; i++ {
		if err := p.DeleteSnapshot(ctx, snap); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	if left := socketsIn(t, dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	runTool(t, "qemu-io", "-f", "qcow2", "-c", "write 0 4k", filepath.Join(dir, "os.qcow2")) // the lock is gone
}

// qemu-nbd gone (a reboot) while the files are unchanged: OpenDisk serves
// the snapshot again. A retried CreateSnapshot replaces its own server.
func TestStoppedQcow2ServerRestarted(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	dir := qcow2VM(t, root)
	p, _ := qemu.New(root)
	ctx := context.Background()
	snap, err := p.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "s1"}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	t.Cleanup(func() { p.DeleteSnapshot(ctx, snap) })
	killServers(t, dir)
	got, _ := readAll(t, p, snap, "os")
	if !bytes.Equal(got[mib:mib+4], []byte{0xab, 0xab, 0xab, 0xab}) {
		t.Fatal("restarted qemu-nbd serves wrong data")
	}
}

// killServers kills (by pid) the qemu-nbd processes serving sockets of dir,
// as a reboot would.
func killServers(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmd, []byte("--socket="+dir+"/.vmvault-nbd-")) {
			syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	if n == 0 {
		t.Fatal("no qemu-nbd serves the snapshot")
	}
	// Gone once their command lines are (a zombie has none).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		alive := false
		for _, e := range ents {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			alive = alive || bytes.Contains(cmd, []byte("--socket="+dir+"/.vmvault-nbd-"))
		}
		if !alive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("killed qemu-nbd still there")
		}
	}
}

// A truncated qcow2 image (QEMU would read its lost clusters as zeros) and
// one that is not qcow2 at all fail the snapshot with an error naming the
// vm, the disk and the file, and leave no qemu-nbd behind.
func TestDamagedQcow2(t *testing.T) {
	needTools(t)
	for _, tc := range []struct {
		name   string
		damage func(path string)
		want   string
	}{
		{"truncated", func(path string) { os.Truncate(path, 1*mib) }, "damaged qcow2 image"},
		{"garbage", func(path string) {
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			f.WriteAt(bytes.Repeat([]byte{0xee}, 512), 100)
			f.Close()
		}, "qcow2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := qcow2VM(t, root)
			img := filepath.Join(dir, "os.qcow2")
			tc.damage(img)
			p, _ := qemu.New(root)
			_, err := p.CreateSnapshot(context.Background(), "vm", platform.SnapshotRequest{ID: "s1"})
			if err == nil {
				t.Fatal("snapshot of a damaged image succeeded")
			}
			for _, want := range []string{`vm "vm"`, `disk "os"`, img, tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
			t.Logf("%s: %v", tc.name, err)
			if !errors.Is(err, platform.ErrInvalidVM) {
				t.Fatalf("error %v is not ErrInvalidVM", err)
			}
			if left := socketsIn(t, dir); len(left) != 0 {
				t.Fatalf("left behind: %v", left)
			}
		})
	}
}

// An image a writer holds (QEMU's write lock) is busy.
func TestStoppedQcow2Busy(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	dir := qcow2VM(t, root)
	release, err := imagelock.HoldWriteLock(filepath.Join(dir, "os.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	p, _ := qemu.New(root)
	_, err = p.CreateSnapshot(context.Background(), "vm", platform.SnapshotRequest{ID: "s1"})
	if !errors.Is(err, platform.ErrDiskBusy) || !strings.Contains(err.Error(), `disk "os"`) {
		t.Fatalf("snapshot of a locked image: %v, want ErrDiskBusy naming the disk", err)
	}
	if left := socketsIn(t, dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// A qemu-nbd that a crashed job left (its snapshot never deleted) would keep
// the VM's images locked: the VM's next snapshot stops it.
func TestStoppedQcow2LeftoverStopped(t *testing.T) {
	needTools(t)
	root := t.TempDir()
	dir := qcow2VM(t, root)
	p, _ := qemu.New(root)
	ctx := context.Background()
	if _, err := p.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "crashed"}); err != nil {
		t.Fatal(err)
	}
	before := socketsIn(t, dir)
	s2, err := p.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "next"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range before {
		if _, err := os.Lstat(s); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the crashed job's socket %s is still there", s)
		}
	}
	if got, _ := readAll(t, p, s2, "os"); got[mib] != 0xab {
		t.Fatal("the next snapshot reads wrong")
	}
	if err := p.DeleteSnapshot(ctx, s2); err != nil {
		t.Fatal(err)
	}
	runTool(t, "qemu-io", "-f", "qcow2", "-c", "write 0 4k", filepath.Join(dir, "os.qcow2")) // nothing holds the lock
}
