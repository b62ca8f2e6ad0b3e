package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// qmpDo runs one QMP command on the live VM.
func (l *liveQEMU) qmpDo(t *testing.T, cmd string, args map[string]any) {
	t.Helper()
	if err := l.qmpRun(cmd, args, nil); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
}

// qmpRun runs one QMP command on the live VM over a connection of its own
// and decodes its return value into out (unless nil).
func (l *liveQEMU) qmpRun(cmd string, args map[string]any, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, l.q.QMP)
	if err != nil {
		return err
	}
	defer c.Close()
	if args == nil {
		// A nil map would go out as "arguments": null, which QMP refuses.
		return c.Execute(ctx, cmd, nil, out)
	}
	return c.Execute(ctx, cmd, args, out)
}

// Changed-block tracking heals by itself: a disk resized while the VM runs
// is compared by checksums for one backup ("cbt: rebuilt") while the other
// disk stays on CBT; a disk hot-added to the running VM gets its first full
// copy while the others stay incremental; every point restores bit-exact.
func TestQEMUPlatformCBTHeals(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make deps installs Debian's qemu-utils)")
	}
	qemutest.Accel(t)
	e := newEnv(t, envOpts{})
	l := newLiveQEMU(t, e)
	dir := filepath.Join(l.inv, "live")
	e.backup("live", "--consistency", "crash")

	// data0 grows from 64 to 96 MiB under the running guest, and is
	// written in the new part; os gets a small write.
	l.qmpDo(t, "block_resize", map[string]any{"node-name": "disk-data0", "size": 96 * mib})
	l.write(t, "data0", 0x21, 80*mib, mib)
	l.write(t, "os", 0x22, 2*mib, 64<<10)
	resized := e.backup("live", "--consistency", "crash")
	if m := methods(resized); m["os"] != vault.MethodCBT || m["data0"] != vault.MethodChecksum {
		t.Fatalf("after a resize: methods %v, want os cbt, data0 checksum (notes %q)", m, resized.Notes)
	}
	if notes := strings.Join(resized.Notes, "\n"); !strings.Contains(notes, "disk data0: cbt: rebuilt") {
		t.Fatalf("the job does not say data0's chain was rebuilt: %q", notes)
	}
	for _, d := range resized.Disks {
		if d.Name == "data0" && d.SizeBytes != 96*mib {
			t.Fatalf("data0 recorded as %d bytes after the resize", d.SizeBytes)
		}
	}

	// data1 is hot-added: a new image, declared in vm.json, plugged into
	// the running QEMU.
	img := filepath.Join(dir, "data1.raw")
	buf := make([]byte, 8*mib)
	rand.Read(buf)
	if err := os.WriteFile(img, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32*mib); err != nil {
		t.Fatal(err)
	}
	var def platform.VM
	raw, _ := os.ReadFile(filepath.Join(dir, "vm.json"))
	json.Unmarshal(raw, &def)
	def.Disks = append(def.Disks, platform.Disk{Name: "data1", Role: platform.DiskData, LUN: 1, File: "data1.raw", Format: "raw"})
	raw, _ = json.Marshal(def)
	if err := os.WriteFile(filepath.Join(dir, "vm.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	l.qmpDo(t, "blockdev-add", map[string]any{"driver": "raw", "node-name": "disk-data1",
		"file": map[string]any{"driver": "file", "filename": img}})
	l.qmpDo(t, "device_add", map[string]any{"driver": "virtio-blk-pci", "drive": "disk-data1", "id": "dev-data1"})
	l.write(t, "os", 0x23, 3*mib, 64<<10)
	added := e.backup("live", "--consistency", "crash")
	m := methods(added)
	if m["os"] != vault.MethodCBT || m["data0"] != vault.MethodCBT || m["data1"] != vault.MethodChecksum {
		t.Fatalf("after adding data1: methods %v, want os and data0 cbt, data1 a first full copy (notes %q)", m, added.Notes)
	}
	for _, d := range added.Disks {
		switch {
		case d.Name == "data1" && d.Stats.NewBytes < 8*mib:
			t.Fatalf("data1's first copy uploaded %d bytes, want its 8 MiB", d.Stats.NewBytes)
		case d.Name != "data1" && d.Stats.ScannedBytes > 2*mib:
			t.Fatalf("disk %s scanned %d bytes, want only its small change", d.Name, d.Stats.ScannedBytes)
		}
	}

	// Nothing writes once QEMU is gone: the files are the last point.
	l.q.Kill()
	want := map[string]string{}
	for _, d := range []string{"os", "data0", "data1"} {
		want[d], _ = vmfixture.SHA256(filepath.Join(dir, d+".raw"))
	}
	out := filepath.Join(t.TempDir(), "out")
	e.mustCLI("restore", added.RecoveryPoint, "--disks", out, "--wait")
	for d, h := range want {
		if got, err := vmfixture.SHA256(filepath.Join(out, d+".raw")); err != nil || got != h {
			t.Fatalf("restored %s: %s %v, want %s", d, got, err, h)
		}
	}
}
