package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// A disk that a real, running QEMU has open for writing is refused (QEMU's
// own image locks), and the backup succeeds once QEMU is gone.
func TestRealQEMUHoldsDisk(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make deps installs Debian's qemu-system-x86)")
	}
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("kvm1", 8)); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(e.vmsRoot(), "kvm1", "data0.raw")
	// -S: the guest never runs; QEMU still opens and locks its disks. KVM when
	// there is one, else TCG.
	cmd := exec.Command(qemu, "-S", "-display", "none", "-nodefaults", "-machine", "accel=kvm:tcg", "-m", "64",
		"-drive", "file="+disk+",format=raw,if=virtio")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Skipf("qemu cannot run here: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	// Wait until QEMU holds its lock (or died, which means it cannot run here).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r := e.cli("backup", "kvm1", "--wait"); r.code != 0 {
			if !strings.Contains(r.stderr, "DiskBusy") || !strings.Contains(r.stderr, "data0") {
				t.Fatalf("backup of a disk QEMU has open: %s", r.stderr)
			}
			break
		}
		select {
		case <-exited:
			t.Skipf("qemu exited at once, it cannot run here: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("backups kept succeeding while QEMU had the disk open")
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	if r := e.backup("kvm1"); r.RecoveryPoint == "" {
		t.Fatalf("backup after QEMU quit: %+v", r)
	}
	if _, err := os.Stat(disk); err != nil {
		t.Fatal(err)
	}
}
