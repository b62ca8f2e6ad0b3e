package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu"
	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// liveQEMU is a VM of the qemu platform's inventory, running in a real
// qemu-system-x86_64 without a guest OS.
type liveQEMU struct {
	inv string
	q   *qemutest.Process
	w   *worker
}

func (l *liveQEMU) start(t *testing.T) {
	t.Helper()
	args, err := qemu.Args(context.Background(), l.inv, "live")
	if err != nil {
		t.Fatal(err)
	}
	l.q = qemutest.StartWith(t, "", filepath.Join(l.inv, "live", "qmp.sock"), append([]string{"-machine", "pc"}, args...)...)
}

// write writes n bytes of pattern at off through the disk's guest device,
// as the guest would.
func (l *liveQEMU) write(t *testing.T, disk string, pattern byte, off, n int64) {
	t.Helper()
	var out string
	cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/dev-%s/virtio-backend "write -P 0x%02x %d %d"`, disk, pattern, off, n)
	if err := l.qmpRun("human-monitor-command", map[string]any{"command-line": cmd}, &out); err != nil || strings.Contains(out, "rror") {
		t.Fatalf("%s: %v %s", cmd, err, out)
	}
}

// newLiveQEMU makes VM "live" in a qemu inventory (two 64 MiB raw disks,
// the first 32 MiB of each random), starts it in a bare QEMU, and starts a
// worker on the qemu platform, with workerEnv added to its environment.
func newLiveQEMU(t *testing.T, e *env, workerEnv ...string) *liveQEMU {
	t.Helper()
	inv := filepath.Join(e.dataDir, "qemu")
	dir := filepath.Join(inv, "live")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// 64 MiB disks, the first 32 MiB of each full of random data.
	for _, name := range []string{"os.raw", "data0.raw"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 32*mib)
		rand.Read(buf)
		f.Write(buf)
		f.Truncate(64 * mib)
		f.Close()
	}
	b, _ := json.Marshal(platform.VM{Name: "live", OS: platform.OSLinux, CPUs: 1, MemoryMB: 64, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.raw", Format: "raw"},
		{Name: "data0", Role: platform.DiskData, File: "data0.raw", Format: "raw"},
	}})
	if err := os.WriteFile(filepath.Join(dir, "vm.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	l := &liveQEMU{inv: inv}
	l.start(t)
	l.w = e.startWorker(append([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + inv}, workerEnv...))
	return l
}

func methods(res workflows.BackupVMResult) map[string]vault.Method {
	out := map[string]vault.Method{}
	for _, d := range res.Disks {
		out[d.Name] = d.Method
	}
	return out
}

// A running QEMU VM backed up by the qemu platform: the incremental reads
// only what the dirty bitmaps say changed; after QEMU restarts without its
// bitmaps the backup heals by comparing checksums and says so; the VM's
// disks restore bit-exact.
func TestQEMUPlatformCBT(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make deps installs Debian's qemu-utils)")
	}
	qemutest.Accel(t) // skips, saying why, where qemu cannot run at all
	e := newEnv(t, envOpts{})
	l := newLiveQEMU(t, e)
	dir := filepath.Join(l.inv, "live")

	// The VM runs no guest OS, so its agent never answers: the backup is
	// crash-consistent and says why.
	full := e.backup("live")
	if full.Type != vault.BackupFull || full.Totals.ScannedBytes < 64*mib {
		t.Fatalf("full backup of the running vm: %+v", full.Totals)
	}
	if notes := strings.Join(full.Notes, "\n"); full.Consistency != platform.CrashConsistent || !strings.Contains(notes, "qga.sock: no answer within") {
		t.Fatalf("running vm without an agent: %s, notes %q; want crash-consistent saying the agent does not answer", full.Consistency, notes)
	}
	// 4 MiB of churn, scattered over both disks.
	for i := int64(0); i < 2; i++ {
		l.write(t, "os", 0x11, i*16*mib, mib)
		l.write(t, "data0", 0x22, 40*mib+i*8*mib, mib)
	}
	began := time.Now()
	cbt := e.backup("live", "--consistency", "crash")
	cbtTime := time.Since(began)
	if m := methods(cbt); m["os"] != vault.MethodCBT || m["data0"] != vault.MethodCBT {
		t.Fatalf("incremental methods %v, want cbt on every disk (notes %q)", m, cbt.Notes)
	}
	if cbt.Totals.ScannedBytes > 8*mib || cbt.Totals.ChangedBytes < 4*mib {
		t.Fatalf("cbt incremental scanned %d bytes, changed %d: want about the 4 MiB written", cbt.Totals.ScannedBytes, cbt.Totals.ChangedBytes)
	}

	// QEMU restarts without the bitmaps: the chain is broken, and the next
	// backup compares checksums instead of failing, and says so.
	l.q.Kill()
	l.start(t)
	l.write(t, "data0", 0x33, 50*mib, mib)
	began = time.Now()
	healed := e.backup("live", "--consistency", "crash")
	checksumTime := time.Since(began)
	if m := methods(healed); m["data0"] != vault.MethodChecksum {
		t.Fatalf("after a restart: methods %v, want checksum", m)
	}
	if !strings.Contains(strings.Join(healed.Notes, "\n"), "cbt: rebuilt") {
		t.Fatalf("the job does not say the chain was rebuilt: %q", healed.Notes)
	}
	t.Logf("cbt incremental: scanned %d bytes in %s; checksum incremental: scanned %d bytes in %s (same vm, 64+64 MiB disks, 64 MiB allocated)",
		cbt.Totals.ScannedBytes, cbtTime.Round(time.Millisecond), healed.Totals.ScannedBytes, checksumTime.Round(time.Millisecond))

	// And once more with CBT, from the healed point.
	l.write(t, "os", 0x44, 60*mib, mib)
	if m := methods(e.backup("live", "--consistency", "crash")); m["os"] != vault.MethodCBT {
		t.Fatalf("after healing: methods %v, want cbt again", m)
	}

	// Stop the VM; its disks restore bit-exact from the latest point.
	l.q.Kill()
	want := map[string]string{}
	for _, d := range []string{"os", "data0"} {
		want[d], _ = vmfixture.SHA256(filepath.Join(dir, d+".raw"))
	}
	last := e.backup("live", "--consistency", "crash")
	out := filepath.Join(t.TempDir(), "out")
	e.mustCLI("restore", last.RecoveryPoint, "--disks", out, "--wait")
	if got := diskHashes(t, out); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
}
