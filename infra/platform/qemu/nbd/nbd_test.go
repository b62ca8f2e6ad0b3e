package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/nbd"
	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

const mib = 1 << 20

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s is not installed (make deps installs Debian's qemu-utils)", tool)
	}
	return p
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// image makes a sparse 64 MiB raw image with 1 MiB of 0xa5 at 1 MiB and
// "tail" in its last bytes.
func image(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(64 * mib)
	f.WriteAt(bytes.Repeat([]byte{0xa5}, mib), mib)
	f.WriteAt([]byte("tail"), 64*mib-4)
	return path
}

func waitSocket(t *testing.T, sock string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// qemuNBD serves file with qemu-nbd on a unix socket until the test ends.
func qemuNBD(t *testing.T, args ...string) string {
	t.Helper()
	bin := need(t, "qemu-nbd")
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	cmd := exec.Command(bin, append([]string{"--read-only", "--persistent", "--shared=4", "-k", sock}, args...)...)
	var out bytes.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitSocket(t, sock)
	return sock
}

func checkContent(t *testing.T, c *nbd.Conn) {
	t.Helper()
	if c.Size() != 64*mib {
		t.Fatalf("size %d", c.Size())
	}
	buf := make([]byte, 3*mib)
	if n, err := c.ReadAt(buf, 0); n != len(buf) || err != nil {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	want := make([]byte, 3*mib)
	copy(want[mib:], bytes.Repeat([]byte{0xa5}, mib))
	if !bytes.Equal(buf, want) {
		t.Fatal("read differs")
	}
	tail := make([]byte, 10)
	n, err := c.ReadAt(tail, 64*mib-4)
	if n != 4 || err != io.EOF || string(tail[:4]) != "tail" {
		t.Fatalf("read at the end: %d %v %q", n, err, tail[:n])
	}
	if n, err := c.ReadAt(tail, 64*mib); n != 0 || err != io.EOF {
		t.Fatalf("read past the end: %d %v", n, err)
	}
	// A read larger than one request.
	big := make([]byte, 20*mib)
	if n, err := c.ReadAt(big, 0); n != len(big) || err != nil || !bytes.Equal(big[:3*mib], want) {
		t.Fatalf("big read: %d %v", n, err)
	}
}

func dataExtents(t *testing.T, c *nbd.Conn) []nbd.Extent {
	t.Helper()
	ext, err := c.BlockStatus(context.Background(), nbd.BaseAllocation, 0, c.Size())
	if err != nil {
		t.Fatal(err)
	}
	var data []nbd.Extent
	var at int64
	for _, e := range ext {
		if e.Offset != at {
			t.Fatalf("extents not contiguous: %v", ext)
		}
		at += e.Length
		if e.Flags&nbd.StateHole == 0 {
			data = append(data, e)
		}
	}
	if at != c.Size() {
		t.Fatalf("extents end at %d of %d", at, c.Size())
	}
	return data
}

func covers(ext []nbd.Extent, off, n int64) bool {
	for _, e := range ext {
		if e.Offset <= off && off+n <= e.Offset+e.Length {
			return true
		}
	}
	return false
}

func allocated(ext []nbd.Extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.Length
	}
	return n
}

func TestQemuNBDRaw(t *testing.T) {
	sock := qemuNBD(t, "-f", "raw", "-x", "vm", image(t, t.TempDir()))
	ctx := context.Background()
	c, err := nbd.Dial(ctx, "unix", sock, nbd.Options{Export: "vm", MetaContexts: []string{nbd.BaseAllocation, "qemu:dirty-bitmap:nope"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.HasContext(nbd.BaseAllocation) || c.HasContext("qemu:dirty-bitmap:nope") {
		t.Errorf("contexts: base:allocation %v, missing bitmap %v", c.HasContext(nbd.BaseAllocation), c.HasContext("qemu:dirty-bitmap:nope"))
	}
	checkContent(t, c)
	data := dataExtents(t, c)
	if !covers(data, mib, mib) || !covers(data, 64*mib-4, 4) || allocated(data) > 8*mib {
		t.Errorf("data extents %v", data)
	}
	if _, err := nbd.Dial(ctx, "unix", sock, nbd.Options{Export: "other"}); err == nil {
		t.Error("an unknown export was accepted")
	} else {
		t.Log(err)
	}
}

func TestQemuNBDDirtyBitmap(t *testing.T) {
	need(t, "qemu-img")
	need(t, "qemu-io")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", img)
	run(t, "qemu-img", "bitmap", "--add", "--enable", img, "b0")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 32M 64k", img)
	sock := qemuNBD(t, "-f", "qcow2", "-B", "b0", img)
	c, err := nbd.Dial(context.Background(), "unix", sock, nbd.Options{MetaContexts: []string{nbd.BaseAllocation, nbd.DirtyBitmapPrefix + "b0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ext, err := c.BlockStatus(context.Background(), nbd.DirtyBitmapPrefix+"b0", 0, c.Size())
	if err != nil {
		t.Fatal(err)
	}
	var dirty []nbd.Extent
	for _, e := range ext {
		if e.Flags&nbd.StateDirty != 0 {
			dirty = append(dirty, e)
		}
	}
	if len(dirty) != 1 || dirty[0].Offset != 32*mib || dirty[0].Length != 64<<10 {
		t.Errorf("dirty extents %v, want 32M+64k", dirty)
	}
	buf := make([]byte, 64<<10)
	if _, err := c.ReadAt(buf, 32*mib); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{0x5a}, len(buf))) {
		t.Errorf("read of the dirty range: %v", err)
	}
}

// TestQEMUExport reads an export of QEMU's own NBD server, with a dirty
// bitmap written through QEMU.
func TestQEMUExport(t *testing.T) {
	dir := t.TempDir()
	img := image(t, dir)
	p := qemutest.Start(t, dir, "-machine", "none",
		"-blockdev", "driver=file,filename="+img+",node-name=file0",
		"-blockdev", "driver=raw,file=file0,node-name=disk0")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	q, err := qmp.Dial(ctx, p.QMP)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	sock := filepath.Join(dir, "nbd.sock")
	must := func(cmd string, args any) {
		t.Helper()
		if err := q.Execute(ctx, cmd, args, nil); err != nil {
			t.Fatal(err)
		}
	}
	must("block-dirty-bitmap-add", map[string]any{"node": "disk0", "name": "b0"})
	must("human-monitor-command", map[string]any{"command-line": `qemu-io disk0 "write -P 0x5a 8M 64k"`})
	must("human-monitor-command", map[string]any{"command-line": `qemu-io disk0 "write -P 0xa5 1M 64k"`})
	must("block-dirty-bitmap-disable", map[string]any{"node": "disk0", "name": "b0"}) // exports need a frozen bitmap
	must("nbd-server-start", map[string]any{"addr": map[string]any{"type": "unix", "data": map[string]any{"path": sock}}})
	must("block-export-add", map[string]any{"type": "nbd", "id": "e0", "node-name": "disk0", "name": "disk0", "writable": false, "bitmaps": []string{"b0"}})
	c, err := nbd.Dial(ctx, "unix", sock, nbd.Options{Export: "disk0", MetaContexts: []string{nbd.BaseAllocation, nbd.DirtyBitmapPrefix + "b0"}})
	if err != nil {
		t.Fatal(err)
	}
	// image's content plus the 64k of 0x5a at 8M.
	buf := make([]byte, 64<<10)
	if _, err := c.ReadAt(buf, 8*mib); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{0x5a}, len(buf))) {
		t.Fatalf("read of what QEMU wrote: %v", err)
	}
	ext, err := c.BlockStatus(ctx, nbd.DirtyBitmapPrefix+"b0", 0, c.Size())
	if err != nil {
		t.Fatal(err)
	}
	var dirty []nbd.Extent
	for _, e := range ext {
		if e.Flags&nbd.StateDirty != 0 {
			dirty = append(dirty, e)
		}
	}
	if len(dirty) != 2 || dirty[0].Offset != mib || dirty[1].Offset != 8*mib || dirty[1].Length != 64<<10 {
		t.Errorf("dirty %v", dirty)
	}
	data := dataExtents(t, c)
	if !covers(data, 8*mib, 64<<10) || allocated(data) > 16*mib {
		t.Errorf("data extents %v", data)
	}
	c.Close()
	// After the export is removed, the connection is refused.
	must("block-export-del", map[string]any{"id": "e0"})
	_, err = nbd.Dial(ctx, "unix", sock, nbd.Options{Export: "disk0"})
	var ne *nbd.Error
	if !errors.As(err, &ne) {
		t.Errorf("a removed export: got %v, want an nbd error", err)
	}
}
