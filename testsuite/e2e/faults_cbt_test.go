package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/workflows"
)

// clearBitmaps clears the recording vmvault bitmap of disk's node by hand,
// so the writes it recorded since the last snapshot are forgotten: the
// tracking now misses them, as it would an image written while the VM was
// stopped.
func (l *liveQEMU) clearBitmaps(t *testing.T, disk string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, l.q.QMP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var nodes []struct {
		NodeName     string `json:"node-name"`
		DirtyBitmaps []struct {
			Name      string `json:"name"`
			Recording bool   `json:"recording"`
		} `json:"dirty-bitmaps"`
	}
	if err := c.Execute(ctx, "query-named-block-nodes", nil, &nodes); err != nil {
		t.Fatal(err)
	}
	cleared := 0
	for _, n := range nodes {
		if n.NodeName != "disk-"+disk {
			continue
		}
		for _, b := range n.DirtyBitmaps {
			if strings.HasPrefix(b.Name, "vmvault-") && b.Recording {
				if err := c.Execute(ctx, "block-dirty-bitmap-clear", map[string]any{"node": n.NodeName, "name": b.Name}, nil); err != nil {
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

// restoredDiff restores rp's disks and returns, per disk, how many bytes
// differ from the VM's image files (0: bit-exact).
func (e *env) restoredDiff(rp, dir string, disks ...string) map[string]int64 {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "restore")
	e.mustCLI("restore", rp, "--disks", out, "--wait")
	diff := map[string]int64{}
	for _, d := range disks {
		want, err := os.ReadFile(filepath.Join(dir, d+".raw"))
		if err != nil {
			e.t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, d+".raw"))
		if err != nil {
			e.t.Fatal(err)
		}
		diff[d] = int64(max(len(want), len(got)) - min(len(want), len(got)))
		for i := range min(len(want), len(got)) {
			if want[i] != got[i] {
				diff[d]++
			}
		}
	}
	os.RemoveAll(out)
	return diff
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

// Writes behind the dirty bitmap's back (written through QEMU, then the
// bitmap cleared by hand, so the tracking says nothing changed): the next
// CBT incremental's audit finds exactly the blocks the bitmap missed, reads
// that disk in full ("cbt: audit found N blocks the bitmap missed") while
// the other disk stays CBT, and the point restores bit-exact; the backup
// after it does not trust that disk's bitmap yet, the one after that is CBT
// again, and both restore bit-exact. The negative proves the audit is what
// catches it: with VMVAULT_CBT_AUDIT_RATE=0 the same fault gives a CBT point
// that does not restore the image.
func TestFaultsCBTAudit(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make deps installs Debian's qemu-utils)")
	}
	qemutest.Accel(t)
	e := newEnv(t, envOpts{})
	// Rate 1: the audit reads every block outside the dirty extents, so it
	// is sure to hit the ones written behind the bitmap's back.
	l := newLiveQEMU(t, e, "VMVAULT_CBT_AUDIT_RATE=1")
	dir := filepath.Join(l.inv, "live")
	disks := []string{"os", "data0"}
	var o faultOutcome
	verify := func(rp string) {
		t.Helper()
		o.Restores++
		for d, n := range e.restoredDiff(rp, dir, disks...) {
			if n != 0 {
				t.Errorf("%s: disk %s restored with %d bytes differing from the image", rp, d, n)
				o.WrongRestores++
				o.BytesLost += n
			}
		}
	}
	backup := func() workflows.BackupVMResult {
		t.Helper()
		res := e.backup("live", "--consistency", "crash")
		o.Completed++
		return res
	}

	backup()
	// Behind the bitmap's back: 1 MiB in os's random data and 256 KiB in
	// its zeros (20 blocks of 64 KiB); a tracked 1 MiB write on data0.
	l.write(t, "os", 0x5a, 8*mib, mib)
	l.write(t, "os", 0x5b, 48*mib, 256<<10)
	l.clearBitmaps(t, "os")
	o.Faults += 2
	l.write(t, "data0", 0x22, 20*mib, mib)
	caught := backup()
	if m := methods(caught); m["os"] != vault.MethodChecksum || m["data0"] != vault.MethodCBT {
		t.Fatalf("after writes behind os's bitmap: methods %v, want os checksum, data0 cbt (notes %q)", m, caught.Notes)
	}
	if got := auditMisses(caught); len(got) != 1 || got["os"] != 20 {
		t.Fatalf("audit notes %v, want os: 20 blocks (notes %q)", got, caught.Notes)
	}
	if st := diskStats(caught, "data0"); st.AuditedBlocks == 0 || st.AuditMissed != 0 || st.ScannedBytes > 64*mib {
		t.Fatalf("data0 (tracked): audited %d blocks, %d missed, scanned %d bytes: want a clean audit on cbt", st.AuditedBlocks, st.AuditMissed, st.ScannedBytes)
	}
	verify(caught.RecoveryPoint)

	// The next backup does not trust os's bitmap since that point.
	l.write(t, "os", 0x61, 2*mib, mib)
	l.write(t, "data0", 0x62, 2*mib, mib)
	after := backup()
	if m := methods(after); m["os"] != vault.MethodChecksum || m["data0"] != vault.MethodCBT {
		t.Fatalf("backup after the audit: methods %v, want os checksum once more, data0 cbt (notes %q)", m, after.Notes)
	}
	if notes := strings.Join(after.Notes, "\n"); !strings.Contains(notes, "disk os: cbt: not trusted") || len(auditMisses(after)) != 0 {
		t.Fatalf("backup after the audit: notes %q, want os not trusted and no audit finding", after.Notes)
	}
	verify(after.RecoveryPoint)

	// Then CBT again, audited clean.
	l.write(t, "os", 0x63, 4*mib, mib)
	again := backup()
	if m := methods(again); m["os"] != vault.MethodCBT || m["data0"] != vault.MethodCBT {
		t.Fatalf("later backup: methods %v, want cbt on both (notes %q)", m, again.Notes)
	}
	if st := diskStats(again, "os"); st.AuditedBlocks == 0 || st.AuditMissed != 0 {
		t.Fatalf("later backup: os audited %d blocks, %d missed", st.AuditedBlocks, st.AuditMissed)
	}
	verify(again.RecoveryPoint)

	// Fleecing leaves nothing behind in the VM's folder.
	left, _ := filepath.Glob(filepath.Join(dir, ".vmvault-fleece-*"))
	o.Leaks += len(left)
	recordFaults(t, o)

	// The negative: without the audit the same fault goes unseen, and the
	// point silently keeps the parent's blocks.
	l.w.kill()
	l.w = e.startWorker([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + l.inv, "VMVAULT_CBT_AUDIT_RATE=0"})
	l.write(t, "os", 0x77, 12*mib, mib)
	l.clearBitmaps(t, "os")
	blind := e.backup("live", "--consistency", "crash")
	if m := methods(blind); m["os"] != vault.MethodCBT || len(auditMisses(blind)) != 0 {
		t.Fatalf("without the audit: methods %v, notes %q; want os cbt and no audit", m, blind.Notes)
	}
	if st := diskStats(blind, "os"); st.AuditedBlocks != 0 {
		t.Fatalf("rate 0 audited %d blocks", st.AuditedBlocks)
	}
	diff := e.restoredDiff(blind.RecoveryPoint, dir, disks...)
	if diff["os"] == 0 {
		t.Fatal("without the audit the point restores bit-exact: the scenario does not show what the audit catches")
	}
	if diff["data0"] != 0 {
		t.Fatalf("without the audit: data0 restored with %d bytes differing", diff["data0"])
	}
	t.Logf("without the audit: os restores with %d bytes differing from the image (1 MiB was written behind the bitmap's back)", diff["os"])
}
