package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/workflows"
)

// clearBitmaps clears the recording vmvault bitmap of disk's node by hand,
// so the writes it recorded since the last snapshot are forgotten: the
// tracking now misses them, as it would an image written while the VM was
// stopped.
func (l *liveQEMU) clearBitmaps(t *testing.T, disk string) {
	t.Helper()
	var nodes []struct {
		NodeName     string `json:"node-name"`
		DirtyBitmaps []struct {
			Name      string `json:"name"`
			Recording bool   `json:"recording"`
		} `json:"dirty-bitmaps"`
	}
	if err := l.qmpRun("query-named-block-nodes", nil, &nodes); err != nil {
		t.Fatal(err)
	}
	cleared := 0
	for _, n := range nodes {
		if n.NodeName != "disk-"+disk {
			continue
		}
		for _, b := range n.DirtyBitmaps {
			if strings.HasPrefix(b.Name, "vmvault-") && b.Recording {
				if err := l.qmpRun("block-dirty-bitmap-clear", map[string]any{"node": n.NodeName, "name": b.Name}, nil); err != nil {
					t.Fatalf("clear bitmap %s: %v", b.Name, err)
				}
				cleared++
			}
		}
	}
	if cleared == 0 {
		t.Fatalf("disk %s has no recording vmvault bitmap to clear", disk)
	}
}

var auditFound = regexp.MustCompile(`disk (\w+): cbt: audit found (\d+) blocks the bitmap missed; compared checksums`)

// auditMisses are the disks whose audit the job's notes report, with the
// blocks it found missed.
func auditMisses(res workflows.BackupVMResult) map[string]int {
	out := map[string]int{}
	for _, n := range res.Notes {
		if m := auditFound.FindStringSubmatch(n); m != nil {
			out[m[1]], _ = strconv.Atoi(m[2])
		}
	}
	return out
}

func diskStats(res workflows.BackupVMResult, disk string) vault.DiskStats {
	for _, d := range res.Disks {
		if d.Name == disk {
			return d.Stats
		}
	}
	return vault.DiskStats{}
}

// cbtAuditRun is one scenario of TestFaultsCBTAudit: its jobs, and its
// restores compared with the VM's images.
type cbtAuditRun struct {
	t     *testing.T
	e     *env
	o     faultOutcome
	disks func() map[string][]byte // the VM's disks now, as raw bytes
}

func (r *cbtAuditRun) backup() workflows.BackupVMResult {
	r.t.Helper()
	res := r.e.backup("live", "--consistency", "crash")
	r.o.Completed++
	return res
}

// diff restores rp's disks and returns, per disk, how many bytes differ
// from the VM's disks now (0: bit-exact).
func (r *cbtAuditRun) diff(rp string) map[string]int64 {
	r.t.Helper()
	out := filepath.Join(r.t.TempDir(), "restore")
	r.e.mustCLI("restore", rp, "--disks", out, "--wait")
	defer os.RemoveAll(out)
	diff := map[string]int64{}
	for d, want := range r.disks() {
		got, err := os.ReadFile(filepath.Join(out, d+".raw"))
		if err != nil {
			r.t.Fatal(err)
		}
		diff[d] = int64(max(len(want), len(got)) - min(len(want), len(got)))
		for i := range min(len(want), len(got)) {
			if want[i] != got[i] {
				diff[d]++
			}
		}
	}
	return diff
}

// verify restores rp and counts it in the outcome.
func (r *cbtAuditRun) verify(rp string) {
	r.t.Helper()
	r.o.Restores++
	for d, n := range r.diff(rp) {
		if n != 0 {
			r.t.Errorf("%s: disk %s restored with %d bytes differing from the image", rp, d, n)
			r.o.WrongRestores++
			r.o.BytesLost += n
		}
	}
}

// afterwards checks the two backups after one whose audit found os's
// tracking wrong: the first compares os by checksums once more, the second
// is CBT again with a clean audit; both restore bit-exact.
func (r *cbtAuditRun) afterwards(write func(disk string, pattern byte, off, n int64)) {
	r.t.Helper()
	write("os", 0x61, 2*mib, mib)
	write("data0", 0x62, 2*mib, mib)
	after := r.backup()
	if m := methods(after); m["os"] != vault.MethodChecksum || m["data0"] != vault.MethodCBT {
		r.t.Fatalf("backup after the audit: methods %v, want os checksum once more, data0 cbt (notes %q)", m, after.Notes)
	}
	if notes := strings.Join(after.Notes, "\n"); !strings.Contains(notes, "disk os: cbt: not trusted") || len(auditMisses(after)) != 0 {
		r.t.Fatalf("backup after the audit: notes %q, want os not trusted and no audit finding", after.Notes)
	}
	r.verify(after.RecoveryPoint)

	write("os", 0x63, 4*mib, mib)
	again := r.backup()
	if m := methods(again); m["os"] != vault.MethodCBT || m["data0"] != vault.MethodCBT {
		r.t.Fatalf("later backup: methods %v, want cbt on both (notes %q)", m, again.Notes)
	}
	if st := diskStats(again, "os"); st.AuditedBlocks == 0 || st.AuditMissed != 0 {
		r.t.Fatalf("later backup: os audited %d blocks, %d missed", st.AuditedBlocks, st.AuditMissed)
	}
	r.verify(again.RecoveryPoint)
}

// caught checks the backup after os was written behind its bitmap's back:
// the audit found exactly missed blocks on os, which was read in full,
// while data0 stayed CBT with a clean audit; the point restores bit-exact.
func (r *cbtAuditRun) caught(res workflows.BackupVMResult, missed int) {
	r.t.Helper()
	if m := methods(res); m["os"] != vault.MethodChecksum || m["data0"] != vault.MethodCBT {
		r.t.Fatalf("after writes behind os's bitmap: methods %v, want os checksum, data0 cbt (notes %q)", m, res.Notes)
	}
	if got := auditMisses(res); len(got) != 1 || got["os"] != missed {
		r.t.Fatalf("audit notes %v, want os: %d blocks (notes %q)", got, missed, res.Notes)
	}
	if st := diskStats(res, "data0"); st.AuditedBlocks == 0 || st.AuditMissed != 0 || st.ScannedBytes > 64*mib {
		r.t.Fatalf("data0 (tracked): audited %d blocks, %d missed, scanned %d bytes: want a clean audit on cbt", st.AuditedBlocks, st.AuditMissed, st.ScannedBytes)
	}
	r.verify(res.RecoveryPoint)
}

// leaks counts what fleecing left in the VM's folder.
func (r *cbtAuditRun) leaks(dir string) {
	left, _ := filepath.Glob(filepath.Join(dir, ".vmvault-fleece-*"))
	r.o.Leaks += len(left)
}

// Writes behind the dirty bitmap's back, two ways: written through a
// running QEMU and then the bitmap cleared by hand; or a qcow2 image
// written while the VM was stopped (its persistent bitmap disabled around
// the write, as a tool unaware of it would leave it). The writes are
// seeded (behindWrites: 2 in the short form, 6 under VMVAULT_FAULTS=full).
// Either way the tracking says nothing changed there. The next CBT incremental's audit
// finds exactly the blocks the bitmap missed, reads that disk in full
// ("cbt: audit found N blocks the bitmap missed") while the other disk
// stays CBT, and the point restores bit-exact; the backup after it does not
// trust that disk's bitmap yet, the one after that is CBT again, and both
// restore bit-exact. The negative proves the audit is what catches it:
// with VMVAULT_CBT_AUDIT_RATE=0 the same fault gives a CBT point that does
// not restore the image.
func TestFaultsCBTAudit(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make deps installs Debian's qemu-utils)")
	}
	qemutest.Accel(t)
	t.Run("bitmap-cleared", testCBTAuditCleared)
	t.Run("written-while-stopped", testCBTAuditStopped)
}

func testCBTAuditCleared(t *testing.T) {
	e := newEnv(t, envOpts{})
	// Rate 1: the audit reads every block outside the dirty extents, so it
	// is sure to hit the ones written behind the bitmap's back.
	l := newLiveQEMU(t, e, "VMVAULT_CBT_AUDIT_RATE=1")
	dir := filepath.Join(l.inv, "live")
	r := &cbtAuditRun{t: t, e: e, disks: func() map[string][]byte { return rawDisks(t, dir) }}
	write := func(disk string, p byte, off, n int64) { l.write(t, disk, p, off, n) }

	r.backup()
	// Behind the bitmap's back on os; a tracked 1 MiB write on data0.
	ws, missed := behindWrites(t)
	for _, w := range ws {
		write("os", w.pattern, w.off, w.n)
	}
	l.clearBitmaps(t, "os")
	r.o.Faults += len(ws)
	write("data0", 0x22, 20*mib, mib)
	r.caught(r.backup(), missed)
	r.afterwards(write)
	r.leaks(dir)
	r.o.Scenario = "CBT audit: writes behind a running QEMU's bitmap (cleared by hand)"
	recordFaults(t, r.o)

	// The negative: without the audit the same fault goes unseen, and the
	// point silently keeps the parent's blocks.
	l.w.kill()
	l.w = e.startWorker([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + l.inv, "VMVAULT_CBT_AUDIT_RATE=0"})
	write("os", 0x77, 12*mib, mib)
	l.clearBitmaps(t, "os")
	blind := e.backup("live", "--consistency", "crash")
	if m := methods(blind); m["os"] != vault.MethodCBT || len(auditMisses(blind)) != 0 {
		t.Fatalf("without the audit: methods %v, notes %q; want os cbt and no audit", m, blind.Notes)
	}
	if st := diskStats(blind, "os"); st.AuditedBlocks != 0 {
		t.Fatalf("rate 0 audited %d blocks", st.AuditedBlocks)
	}
	diff := r.diff(blind.RecoveryPoint)
	if diff["os"] == 0 {
		t.Fatal("without the audit the point restores bit-exact: the scenario does not show what the audit catches")
	}
	if diff["data0"] != 0 {
		t.Fatalf("without the audit: data0 restored with %d bytes differing", diff["data0"])
	}
	t.Logf("without the audit: os restores with %d bytes differing from the image (1 MiB was written behind the bitmap's back)", diff["os"])
}

func testCBTAuditStopped(t *testing.T) {
	needQemuUtils(t)
	e := newEnv(t, envOpts{})
	l := newLiveQcow2(t, e, "VMVAULT_CBT_AUDIT_RATE=1")
	dir := filepath.Join(l.inv, "live")
	r := &cbtAuditRun{t: t, e: e, disks: func() map[string][]byte { return qcow2Contents(t, dir) }}
	write := func(disk string, p byte, off, n int64) { l.write(t, disk, p, off, n) }

	r.backup()
	write("data0", 0x22, 20*mib, mib)
	// The VM stops cleanly (QEMU stores its persistent bitmaps), and os's
	// image is written while it is down, its bitmap disabled meanwhile.
	l.qmpDo(t, "quit", map[string]any{})
	if !l.q.Wait(30 * time.Second) {
		t.Fatal("QEMU did not quit")
	}
	img := filepath.Join(dir, "os.qcow2")
	bm := enabledBitmap(t, img)
	mustRun(t, "qemu-img", "bitmap", "--disable", img, bm)
	ws, missed := behindWrites(t)
	args := []string{"-f", "qcow2"}
	for _, w := range ws {
		args = append(args, "-c", fmt.Sprintf("write -P 0x%02x %d %d", w.pattern, w.off, w.n))
	}
	mustRun(t, "qemu-io", append(args, img)...)
	mustRun(t, "qemu-img", "bitmap", "--enable", img, bm)
	r.o.Faults += len(ws)
	l.start(t)
	r.caught(r.backup(), missed)
	r.afterwards(write)
	r.leaks(dir)
	r.o.Scenario = "CBT audit: a stopped VM's qcow2 written with its bitmap disabled"
	recordFaults(t, r.o)
}

// diskWrite is a write of n bytes of pattern at off.
type diskWrite struct {
	pattern byte
	off, n  int64
}

// behindWrites are the writes a scenario makes behind os's bitmap, seeded:
// alternately in os's random data (its first 32 MiB) and in its zeros, 2 in
// the short form and 6 in the full one, each up to 256 KiB; missed is how
// many blocks of the vault's 64 KiB they touch.
func behindWrites(t *testing.T) (ws []diskWrite, missed int) {
	rng := faultRand(t)
	count := 2
	if faultsFull() {
		count = 6
	}
	const bs = 64 << 10
	blocks := map[int64]bool{}
	for i := range count {
		lo, hi := int64(0), int64(31*mib)
		if i%2 == 1 {
			lo, hi = 33*mib, 63*mib
		}
		n := int64(1+rng.Intn(64)) * 4096
		off := lo + rng.Int63n((hi-lo-n)/4096)*4096
		ws = append(ws, diskWrite{pattern: byte(0x50 + i), off: off, n: n})
		for b := off / bs; b < (off+n+bs-1)/bs; b++ {
			blocks[b] = true
		}
	}
	return ws, len(blocks)
}

// rawDisks reads the raw images os and data0 of dir.
func rawDisks(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, d := range []string{"os", "data0"} {
		b, err := os.ReadFile(filepath.Join(dir, d+".raw"))
		if err != nil {
			t.Fatal(err)
		}
		out[d] = b
	}
	return out
}

// qcow2Contents reads the qcow2 images os and data0 of dir as raw bytes
// (sharing the image with a running QEMU).
func qcow2Contents(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, d := range []string{"os", "data0"} {
		raw := filepath.Join(t.TempDir(), d+".raw")
		mustRun(t, "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", filepath.Join(dir, d+".qcow2"), raw)
		b, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(raw)
		out[d] = b
	}
	return out
}

// enabledBitmap is the name of the qcow2 image's enabled vmvault bitmap.
func enabledBitmap(t *testing.T, img string) string {
	t.Helper()
	var info struct {
		Format struct {
			Data struct {
				Bitmaps []struct {
					Name  string   `json:"name"`
					Flags []string `json:"flags"`
				} `json:"bitmaps"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "qemu-img", "info", "--output=json", img)), &info); err != nil {
		t.Fatal(err)
	}
	for _, b := range info.Format.Data.Bitmaps {
		if strings.HasPrefix(b.Name, "vmvault-") && slices.Contains(b.Flags, "auto") {
			return b.Name
		}
	}
	t.Fatalf("%s has no enabled vmvault bitmap: %+v", img, info.Format.Data.Bitmaps)
	return ""
}

// newLiveQcow2 is newLiveQEMU with qcow2 disks, whose dirty bitmaps are
// persistent: they outlive a clean stop of QEMU.
func newLiveQcow2(t *testing.T, e *env, workerEnv ...string) *liveQEMU {
	t.Helper()
	inv := filepath.Join(e.dataDir, "qemu")
	dir := filepath.Join(inv, "live")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"os", "data0"} {
		raw := filepath.Join(t.TempDir(), name+".raw")
		buf := make([]byte, 32*mib)
		rand.Read(buf)
		if err := os.WriteFile(raw, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(raw, 64*mib); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, filepath.Join(dir, name+".qcow2"))
	}
	writeVMJSON(t, dir, platform.VM{Name: "live", OS: platform.OSLinux, CPUs: 1, MemoryMB: 64, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.qcow2", Format: "qcow2"},
		{Name: "data0", Role: platform.DiskData, File: "data0.qcow2", Format: "qcow2"},
	}})
	l := &liveQEMU{inv: inv}
	l.start(t)
	l.w = e.startWorker(append([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + inv}, workerEnv...))
	return l
}
