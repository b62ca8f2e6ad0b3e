package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

func needQemuUtils(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io", "qemu-nbd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs Debian's qemu-utils)", tool)
		}
	}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// allocated is the bytes a file holds on disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// qcow2Disks makes the stopped VM name in inv with two 64 MiB qcow2 disks,
// a few MiB of each written with qemu-io.
func qcow2Disks(t *testing.T, inv, name string) string {
	t.Helper()
	dir := filepath.Join(inv, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, d := range []string{"os", "data0"} {
		img := filepath.Join(dir, d+".qcow2")
		mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
		mustRun(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x1"+string(rune('0'+i))+" 0 2M", "-c", "write -P 0xcd 40M 1M", "-c", "write -P 0x00 50M 1M", img)
	}
	writeVMJSON(t, dir, platform.VM{Name: name, OS: platform.OSLinux, CPUs: 1, MemoryMB: 64, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.qcow2", Format: "qcow2"},
		{Name: "data0", Role: platform.DiskData, File: "data0.qcow2", Format: "qcow2"},
	}})
	return dir
}

// The content of a qcow2 image as raw, by sha256.
func qcow2Hashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range []string{"os", "data0"} {
		raw := filepath.Join(t.TempDir(), d+".raw")
		mustRun(t, "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", filepath.Join(dir, d+".qcow2"), raw)
		out[d], _ = vmfixture.SHA256(raw)
	}
	return out
}

// A stopped VM with qcow2 disks on the qemu platform backs up through
// qemu-nbd, reading only the allocated clusters, and restores bit-exact as
// sparse raw images (disks only and as a new VM); a truncated image fails
// the backup with one line naming the vm, the disk and the file.
func TestQEMUStoppedQcow2(t *testing.T) {
	needQemuUtils(t)
	e := newEnv(t, envOpts{})
	inv := filepath.Join(e.dataDir, "qemu")
	dir := qcow2Disks(t, inv, "q")
	e.startWorker([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + inv})
	want := qcow2Hashes(t, dir)

	full := e.backup("q")
	if !strings.Contains(strings.Join(full.Notes, "\n"), "qemu-nbd") {
		t.Fatalf("the job does not say how it read the qcow2 images: %q", full.Notes)
	}
	if full.Totals.ScannedBytes > 10*mib {
		t.Fatalf("full backup scanned %d bytes of 2 x 64 MiB with 4 MiB allocated each: holes were read", full.Totals.ScannedBytes)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".vmvault-*")); len(left) != 0 {
		t.Fatalf("the snapshot left %v", left)
	}

	out := filepath.Join(t.TempDir(), "out")
	e.mustCLI("restore", full.RecoveryPoint, "--disks", out, "--wait")
	if got := diskHashes(t, out); got["os"] != want["os"] || got["data0"] != want["data0"] {
		t.Fatalf("restored %v, want %v", got, want)
	}
	for _, d := range []string{"os", "data0"} {
		if a := allocated(t, filepath.Join(out, d+".raw")); a > 6*mib {
			t.Fatalf("restored %s.raw holds %d bytes on disk: holes were written", d, a)
		}
		mustRun(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", filepath.Join(out, d+".raw"), filepath.Join(dir, d+".qcow2"))
	}

	// A new VM from it: raw images (the platform writes raw), same content.
	if out := e.mustCLI("restore", full.RecoveryPoint, "--new-vm", "q2", "--wait"); !strings.Contains(out, "disk os: restored as a raw image (the backed-up vm had qcow2") {
		t.Fatalf("the restore does not say the qcow2 disks became raw: %s", out)
	}
	for _, d := range []string{"os", "data0"} {
		mustRun(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", filepath.Join(inv, "q2", d+".raw"), filepath.Join(dir, d+".qcow2"))
	}

	// A second backup of the unchanged VM (checksums) stores nothing new.
	if inc := e.backup("q"); inc.Totals.NewBytes != 0 {
		t.Fatalf("incremental of an unchanged vm uploaded %d bytes", inc.Totals.NewBytes)
	}

	img := filepath.Join(dir, "os.qcow2")
	if err := os.Truncate(img, mib); err != nil {
		t.Fatal(err)
	}
	line := e.failCLI("damaged qcow2", "backup", "q", "--wait")
	for _, s := range []string{"q", `disk "os"`, img} {
		if !strings.Contains(line, s) {
			t.Fatalf("error %q does not name %q", line, s)
		}
	}
}

func writeVMJSON(t *testing.T, dir string, vm platform.VM) {
	t.Helper()
	b, err := json.MarshalIndent(vm, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vm.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
