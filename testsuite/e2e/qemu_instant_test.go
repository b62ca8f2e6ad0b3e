package e2e

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// liveVM makes the inventory VM "live": two 64 MiB raw disks, the first
// 32 MiB of each random.
func liveVM(t *testing.T, inv string) string {
	t.Helper()
	dir := filepath.Join(inv, "live")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"os.raw", "data0.raw"} {
		buf := make([]byte, 32*mib)
		rand.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(dir, name), 64*mib); err != nil {
			t.Fatal(err)
		}
	}
	writeVMJSON(t, dir, platform.VM{Name: "live", OS: platform.OSLinux, CPUs: 1, MemoryMB: 64, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.raw", Format: "raw"},
		{Name: "data0", Role: platform.DiskData, File: "data0.raw", Format: "raw"},
	}})
	return dir
}

func (e *env) restoreJSON(args ...string) workflows.RestoreVMResult {
	e.t.Helper()
	out := e.mustCLI(append([]string{"restore", "--wait", "--json"}, args...)...)
	var res workflows.RestoreVMResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		e.t.Fatalf("restore output %q: %v", out, err)
	}
	return res
}

// Instant restore on a running QEMU VM: backup --keep-snapshot keeps the
// point-in-time image on the host and the recovery point records it; the
// guest writes on; restore --new-vm makes a VM of qcow2 overlays on the
// kept image without reading the vault (its packs are moved away meanwhile)
// that reads the point-in-time content and backs up itself; an expired
// kept snapshot is removed by the next backup's cleanup unless a VM uses
// it; a kept image that was deleted, and --from-vault, restore from the
// vault.
func TestQEMUInstantRestore(t *testing.T) {
	needQemuUtils(t)
	qemutest.Accel(t) // skips, saying why, where qemu cannot run at all
	e := newEnv(t, envOpts{})
	inv := filepath.Join(e.dataDir, "qemu")
	dir := liveVM(t, inv)
	l := &liveQEMU{inv: inv}
	l.start(t)
	e.startWorker([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + inv})

	l.write(t, "os", 0x11, 40*mib, mib)
	pit := diskHashes(t, dir) // nothing writes until the backup is done
	began := time.Now()
	b1 := e.backup("live", "--keep-snapshot", "--keep-for", "1h")
	if b1.Kept == nil || b1.Kept.Host != "local" || len(b1.Kept.Paths) != 2 {
		t.Fatalf("backup --keep-snapshot: kept %+v, notes %q", b1.Kept, b1.Notes)
	}
	t.Logf("backup --keep-snapshot of the running vm (2 x 64 MiB, 64 MiB allocated) took %s", time.Since(began).Round(time.Millisecond))
	if left, _ := filepath.Glob(filepath.Join(dir, ".vmvault-fleece-*")); len(left) != 0 {
		t.Fatalf("the fleecing snapshot was not deleted: %v", left)
	}
	// The guest writes on after the backup.
	l.write(t, "os", 0x99, 0, 2*mib)
	l.write(t, "data0", 0x98, 10*mib, mib)
	if diskHashes(t, dir)["os"] == pit["os"] {
		t.Fatal("the writes after the backup did not reach the disk")
	}

	// The vault cannot serve data now: an instant restore does not need it.
	packs := filepath.Join(e.dataDir, "vault", "packs")
	if err := os.Rename(packs, packs+".away"); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	fast := e.restoreJSON(b1.RecoveryPoint, "--new-vm", "fast")
	took := time.Since(began)
	if err := os.Rename(packs+".away", packs); err != nil {
		t.Fatal(err)
	}
	if fast.Instant == nil || fast.Instant.Host != "local" || !strings.Contains(strings.Join(fast.Notes, "\n"), "instant restore from the kept snapshot on host local: no data read from the vault") {
		t.Fatalf("restore of a kept point: %+v", fast)
	}
	for _, d := range fast.Disks {
		if d.Result.WrittenBytes != 0 || d.Result.Requests != 0 {
			t.Fatalf("instant restore wrote or read vault data: %+v", d)
		}
	}
	t.Logf("instant restore to a new vm took %s (cli round trip included)", took.Round(time.Millisecond))
	fastDir := filepath.Join(inv, "fast")
	if got := qcow2Hashes(t, fastDir); got["os"] != pit["os"] || got["data0"] != pit["data0"] {
		t.Fatalf("the instant vm reads %v, want the point in time %v", got, pit)
	}
	// It is a VM of the inventory: a (stopped, qcow2) backup of it works.
	if r := e.backup("fast"); r.RecoveryPoint == "" {
		t.Fatalf("backup of the instant vm: %+v", r)
	}
	text := e.mustCLI("restore", b1.RecoveryPoint, "--new-vm", "fast2", "--wait")
	if !strings.Contains(text, "instant restore from the kept snapshot on host local: no data read from the vault") {
		t.Fatalf("restore output does not say it was instant: %s", text)
	}

	// --from-vault reads the vault even so.
	slow := e.restoreJSON(b1.RecoveryPoint, "--new-vm", "viavault", "--from-vault")
	if slow.Instant != nil || diskHashes(t, filepath.Join(inv, "viavault"))["os"] != pit["os"] {
		t.Fatalf("--from-vault: %+v", slow)
	}

	// A kept image deleted behind vmvault's back: the restore falls back.
	pit3 := diskHashes(t, dir)
	b3 := e.backup("live", "--keep-snapshot", "--keep-for", "1h")
	if err := os.RemoveAll(filepath.Dir(b3.Kept.Paths["os"])); err != nil {
		t.Fatal(err)
	}
	r3 := e.restoreJSON(b3.RecoveryPoint, "--new-vm", "fallback")
	if r3.Instant != nil || !strings.Contains(strings.Join(r3.Notes, "\n"), "restoring from the vault") {
		t.Fatalf("restore of a point whose kept image is gone: %+v", r3)
	}
	if got := diskHashes(t, filepath.Join(inv, "fallback")); got["os"] != pit3["os"] || got["data0"] != pit3["data0"] {
		t.Fatalf("fallback restored %v, want %v", got, pit3)
	}

	// Expiry: a point kept for a second is removed by the next backup's
	// cleanup; b1's image, which vm fast uses, stays.
	b4 := e.backup("live", "--keep-snapshot", "--keep-for", "1s")
	kept4 := filepath.Dir(b4.Kept.Paths["os"])
	if _, err := os.Stat(kept4); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	b5 := e.backup("live")
	if _, err := os.Stat(kept4); !os.IsNotExist(err) {
		t.Fatalf("expired kept snapshot still there (%v); notes %q", err, b5.Notes)
	}
	if !strings.Contains(strings.Join(b5.Notes, "\n"), "expired and was removed") {
		t.Fatalf("the cleanup does not say what it removed: %q", b5.Notes)
	}
	if _, err := os.Stat(b1.Kept.Paths["os"]); err != nil {
		t.Fatalf("b1's kept image, used by vm fast, is gone: %v", err)
	}
	if r := e.restoreJSON(b4.RecoveryPoint, "--new-vm", "late"); r.Instant != nil {
		t.Fatalf("restore of an expired kept point was instant: %+v", r)
	}
}

// The images platform keeps nothing: --keep-snapshot is a note, not a
// failure, and the point restores from the vault.
func TestKeepSnapshotImagesPlatform(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("img1", 3)); err != nil {
		t.Fatal(err)
	}
	b := e.backup("img1", "--keep-snapshot")
	if b.Kept != nil || !strings.Contains(strings.Join(b.Notes, "\n"), "--keep-snapshot: this platform cannot keep snapshots") {
		t.Fatalf("backup --keep-snapshot on the images platform: kept %+v, notes %q", b.Kept, b.Notes)
	}
	if r := e.restoreJSON(b.RecoveryPoint, "--new-vm", "img2"); r.Instant != nil {
		t.Fatalf("restore: %+v", r)
	}
}
