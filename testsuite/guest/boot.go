package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
)

// Image returns the cached guest image, building it first when missing
// (minutes, once per machine and recipe). It skips the test only when
// debootstrap cannot run here at all; a build that fails fails the test.
func Image(t testing.TB) (kernel, initrd, rootfs string) {
	t.Helper()
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	p := pathsIn(filepath.Join(cache, Key()))
	if _, err := os.Stat(p.Rootfs); err != nil {
		if err := CanBuild(); err != nil {
			t.Skipf("no guest image (%s) and %v", p.Dir, err)
		}
		log, err := os.Create(p.Dir + ".log")
		if err != nil {
			t.Fatal(err)
		}
		defer log.Close()
		t.Logf("building the guest image %s (once; the log is %s)", p.Dir, log.Name())
		start := time.Now()
		if p, err = Build(context.Background(), cache, log); err != nil {
			t.Fatal(err)
		}
		t.Logf("guest image built in %s", time.Since(start).Round(time.Second))
	}
	return p.Kernel, p.Initrd, p.Rootfs
}

// VM is a booted guest.
type VM struct {
	*qemutest.Process
	Dir     string // holds the sockets, the console log and the overlay
	Agent   string // the guest agent's socket
	Console string // the serial console's log
	Accel   string // "kvm" or "tcg"
	Disk    string // the root disk's file
	Node    string // its block node name
}

// Options change how Boot starts the guest.
type Options struct {
	// Disk is the root disk; empty means a new qcow2 overlay in the VM's
	// folder over the cached image (which is never written).
	Disk   string
	Format string // Disk's format: "raw" (default) or "qcow2"
	Args   []string
}

// Node is the block node name of the guest's root disk, the default the
// qemu platform expects for a disk named "os".
const Node = "disk-os"

// Probe bounds: a KVM guest prints its first console line within a second
// or two; on hosts where KVM runs QEMU's bare machine but hangs a Linux
// guest before that line, the guest falls back to TCG.
const (
	kvmConsoleWait = 10 * time.Second
	kvmAgentWait   = 30 * time.Second
	agentWait      = 180 * time.Second // TCG: 45 s here alone, more beside other test packages
)

var (
	kvmMu  sync.Mutex
	kvmBad string // why KVM cannot boot the guest, once a boot showed it
)

// Boot starts the guest in dir and waits until its agent answers
// guest-ping. The guest has no network. QEMU is killed when the test ends.
func Boot(t testing.TB, dir string, opts Options) *VM {
	t.Helper()
	kernel, initrd, rootfs := Image(t)
	disk, format := opts.Disk, opts.Format
	if disk == "" {
		disk, format = filepath.Join(dir, "rootfs.qcow2"), "qcow2"
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", rootfs, "-F", "raw", disk).CombinedOutput()
		if err != nil {
			t.Fatalf("qemu-img create overlay: %v: %s", err, out)
		}
	}
	if format == "" {
		format = "raw"
	}
	kvmMu.Lock()
	defer kvmMu.Unlock()
	if qemutest.Accel(t) == "kvm" && kvmBad == "" {
		vm, why := boot(t, dir, "kvm", kernel, initrd, disk, format, opts.Args)
		if vm != nil {
			return vm
		}
		kvmBad = why
		t.Logf("KVM cannot boot the guest here (%s): using TCG", why)
	}
	vm, why := boot(t, dir, "tcg", kernel, initrd, disk, format, opts.Args)
	if vm == nil {
		t.Fatalf("guest did not boot under TCG: %s", why)
	}
	return vm
}

// boot starts QEMU under accel and waits for the agent; it returns why
// when the guest did not come up (and kills QEMU).
func boot(t testing.TB, dir, accel, kernel, initrd, disk, format string, extra []string) (*VM, string) {
	vm := &VM{Dir: dir, Agent: filepath.Join(dir, "qga.sock"), Console: filepath.Join(dir, "console-"+accel+".log"), Accel: accel, Disk: disk, Node: Node}
	os.Remove(vm.Agent)
	args := []string{
		"-accel", accel, "-m", "512", "-no-reboot", "-nic", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "root=/dev/vda rw console=ttyS0 panic=-1",
		"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=%s-file", strings.ReplaceAll(disk, ",", ",,"), Node),
		"-blockdev", fmt.Sprintf("driver=%s,file=%s-file,node-name=%s", format, Node, Node),
		"-device", "virtio-blk-pci,drive=" + Node + ",id=dev-os",
		"-chardev", "socket,path=" + vm.Agent + ",server=on,wait=off,id=qga0",
		"-device", "virtio-serial",
		"-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
		"-serial", "file:" + vm.Console,
	}
	vm.Process = qemutest.StartWith(t, "", filepath.Join(dir, "qmp.sock"), append(args, extra...)...)
	start := time.Now()
	wait := agentWait
	if accel == "kvm" {
		wait = kvmAgentWait
	}
	for {
		if vm.Wait(0) {
			return nil, fmt.Sprintf("qemu exited after %s: %s; console: %s", time.Since(start).Round(time.Second), vm.Output(), tail(vm.Console))
		}
		if accel == "kvm" && time.Since(start) > kvmConsoleWait {
			if fi, err := os.Stat(vm.Console); err != nil || fi.Size() == 0 {
				vm.Kill()
				return nil, fmt.Sprintf("no console output in %s", kvmConsoleWait)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := qga.Dial(ctx, vm.Agent)
		if err == nil {
			err = c.Ping(ctx)
			c.Close()
		}
		cancel()
		if err == nil {
			t.Logf("guest agent answered after %s under %s", time.Since(start).Round(100*time.Millisecond), accel)
			return vm, ""
		}
		if time.Since(start) > wait {
			vm.Kill()
			return nil, fmt.Sprintf("the agent did not answer in %s (%v); console: %s", wait, err, tail(vm.Console))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tail is the end of a console log, for errors.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}
