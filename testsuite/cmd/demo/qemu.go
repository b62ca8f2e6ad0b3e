package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu"
	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
	"github.com/vmvault/vmvault/testsuite/guest"
	"github.com/vmvault/vmvault/workflows"
)

// runQEMU is `make demo-qemu`: the demo's story on a live QEMU VM running
// the tests' Debian guest, backed up through its guest agent.
func runQEMU() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("qemu-system-x86_64 is not installed (make deps installs it): %w", err)
	}
	cache, err := guest.CacheDir()
	if err != nil {
		return err
	}
	img, err := guest.Build(context.Background(), cache, os.Stdout)
	if err != nil {
		return fmt.Errorf("guest image (make guest-image builds it): %w", err)
	}
	_, ui, err := setup("demo-qemu-work")
	if err != nil {
		return err
	}
	inv := filepath.Join(workDir, "qemu")
	env = append(env, "VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY="+inv)
	step("starting the worker on the qemu platform (inventory %s)", inv)
	if err := start("worker", filepath.Join(bin, "vmvault-worker")); err != nil {
		return err
	}

	step("creating VM db01 in the inventory: the Debian guest's root disk (raw) and a 256 MiB data disk")
	dir := filepath.Join(inv, "db01")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "--sparse=always", "--reflink=auto", img.Rootfs, filepath.Join(dir, "os.raw")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the guest image: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "data0.raw"), nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(filepath.Join(dir, "data0.raw"), 256<<20); err != nil {
		return err
	}
	def, _ := json.MarshalIndent(platform.VM{Name: "db01", OS: platform.OSLinux, CPUs: 1, MemoryMB: 512, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.raw", Format: "raw"},
		{Name: "data0", Role: platform.DiskData, LUN: 0, File: "data0.raw", Format: "raw"},
	}}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "vm.json"), def, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s/vm.json:\n%s\n", dir, def)
	vm, err := bootVM(inv, "db01", img)
	if err != nil {
		return err
	}
	step("a pre-script in the guest (/etc/vmvault/pre.d/10-flush) and a writer that keeps writing during every backup")
	if _, err := guestSh(dir, `mkdir -p /etc/vmvault/pre.d /etc/vmvault/post.d
printf '#!/bin/sh\nsync; date +%%T > /root/pre-mark\n' > /etc/vmvault/pre.d/10-flush
chmod +x /etc/vmvault/pre.d/10-flush
mkfs.ext4 -q /dev/vdb && mkdir -p /data && mount /dev/vdb /data`); err != nil {
		return err
	}
	if err := guestSpawn(dir, `i=0; while :; do i=$((i+1)); echo "row $i" >> /data/journal; sync /data/journal; sleep 0.1; done`); err != nil {
		return err
	}
	if err := show("vm", "list"); err != nil {
		return err
	}

	step("vmvault backup db01 --wait   (first backup: installs the extension, app-consistent, full)")
	full, err := backup("db01")
	if err != nil {
		return err
	}
	printNotes(full)
	if full.Consistency != platform.AppConsistent {
		return fmt.Errorf("first backup is %s, want app-consistent", full.Consistency)
	}

	step("the guest writes 32 MiB; vmvault backup db01 --wait   (incremental with changed-block tracking)")
	if _, err := guestSh(dir, `dd if=/dev/urandom of=/data/blob1 bs=1M count=32 conv=fsync status=none`); err != nil {
		return err
	}
	began := time.Now()
	cbt, err := backup("db01")
	if err != nil {
		return err
	}
	cbtTime := time.Since(began)

	step("QEMU killed and started again (dirty bitmaps of raw disks are lost); the guest writes 32 MiB more")
	vm.Process.Kill()
	vm.Wait()
	if vm, err = bootVM(inv, "db01", img); err != nil {
		return err
	}
	if _, err := guestSh(dir, `mount /dev/vdb /data && dd if=/dev/urandom of=/data/blob2 bs=1M count=32 conv=fsync status=none`); err != nil {
		return err
	}
	step("vmvault backup db01 --wait   (the chain is broken: checksum comparison, and the job says cbt: rebuilt)")
	began = time.Now()
	healed, err := backup("db01")
	if err != nil {
		return err
	}
	checksumTime := time.Since(began)
	printNotes(healed)

	step("changed-block tracking versus checksum comparison on this VM")
	fmt.Printf("%-24s %14s %14s %10s\n", "incremental", "bytes read", "bytes changed", "job time")
	fmt.Printf("%-24s %14d %14d %10s\n", "cbt (dirty bitmaps)", cbt.Totals.ScannedBytes, cbt.Totals.ChangedBytes, cbtTime.Round(10*time.Millisecond))
	fmt.Printf("%-24s %14d %14d %10s\n", "checksum comparison", healed.Totals.ScannedBytes, healed.Totals.ChangedBytes, checksumTime.Round(10*time.Millisecond))
	if cbt.Totals.ScannedBytes*4 > healed.Totals.ScannedBytes {
		return fmt.Errorf("cbt incremental read %d bytes, not far below the checksum incremental's %d", cbt.Totals.ScannedBytes, healed.Totals.ScannedBytes)
	}

	step("vmvault backup db01 --keep-snapshot --wait   (the point-in-time image stays on the host for instant restore)")
	kept, err := backup("db01", "--keep-snapshot", "--keep-for", "2h")
	if err != nil {
		return err
	}
	printNotes(kept)

	step("vmvault rp list db01   (consistency of each recovery point)")
	if err := show("rp", "list", "db01"); err != nil {
		return err
	}

	step("vmvault restore %s --new-vm db01-restored --wait", full.RecoveryPoint)
	vm.Process.Kill()
	vm.Wait()
	if err := show("restore", full.RecoveryPoint, "--new-vm", "db01-restored", "--wait"); err != nil {
		return err
	}
	step("vmvault restore %s --new-vm db01-instant --wait   (from the kept image: no data read from the vault)", kept.RecoveryPoint)
	began = time.Now()
	if err := show("restore", kept.RecoveryPoint, "--new-vm", "db01-instant", "--wait"); err != nil {
		return err
	}
	fmt.Printf("instant restore took %s\n", time.Since(began).Round(10*time.Millisecond))
	rdir := filepath.Join(inv, "db01-restored")
	out, err := exec.Command("e2fsck", "-fn", filepath.Join(rdir, "os.raw")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("e2fsck of the restored root disk: %v\n%s", err, out)
	}
	fmt.Printf("e2fsck -fn os.raw: clean\n")
	step("booting db01-restored")
	if _, err := bootVM(inv, "db01-restored", img); err != nil {
		return err
	}
	mark, err := guestSh(rdir, "cat /root/pre-mark")
	if err != nil {
		return err
	}
	fmt.Printf("db01-restored runs; its /root/pre-mark (written by the pre-script of the first backup) reads %s\n", mark)
	fmt.Printf("\ndemo-qemu OK: %s app-consistent full; cbt incremental read %.1f MiB, checksum incremental %.1f MiB; restored VM boots; db01-instant made from the kept snapshot\n",
		full.RecoveryPoint, mib(cbt.Totals.ScannedBytes), mib(healed.Totals.ScannedBytes))
	fmt.Printf("Temporal UI: http://localhost:%s/namespaces/default/workflows\n", ui)
	return nil
}

func printNotes(res workflows.BackupVMResult) {
	for _, n := range res.Notes {
		fmt.Println("  note:", n)
	}
}

type liveVM struct {
	Process *os.Process
	done    chan struct{}
}

func (v *liveVM) Wait() { <-v.done }

// bootVM starts VM name of the inventory with qemu.Args (how an operator
// would start it) plus the guest's kernel, KVM first and TCG when the
// console stays silent, and waits for its guest agent.
func bootVM(inv, name string, img guest.Paths) (*liveVM, error) {
	dir := filepath.Join(inv, name)
	args, err := qemu.Args(context.Background(), inv, name)
	if err != nil {
		return nil, err
	}
	// The guest boots from -kernel, whose option ROM takes boot index 0.
	for i, a := range args {
		args[i] = strings.TrimSuffix(a, ",bootindex=0")
	}
	accels := []string{"tcg"}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		accels = []string{"kvm", "tcg"}
	}
	for _, accel := range accels {
		console := filepath.Join(dir, "console-"+accel+".log")
		os.Remove(console)
		cmd := exec.Command("qemu-system-x86_64", append(args, "-accel", accel, "-nic", "none", "-display", "none", "-no-reboot",
			"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", "root=/dev/vda rw console=ttyS0 panic=-1",
			"-serial", "file:"+console)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		log, err := os.Create(filepath.Join(dir, "qemu.log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, cmd)
		vm := &liveVM{Process: cmd.Process, done: make(chan struct{})}
		go func() { cmd.Wait(); close(vm.done) }()
		start := time.Now()
		fmt.Printf("qemu-system-x86_64 %s (pid %d, %s): waiting for the guest agent\n", name, cmd.Process.Pid, accel)
		for {
			if err := guestPing(dir); err == nil {
				fmt.Printf("%s: guest agent answered after %s under %s\n", name, time.Since(start).Round(time.Second), accel)
				return vm, nil
			}
			select {
			case <-vm.done:
				return nil, fmt.Errorf("qemu exited: see %s", log.Name())
			default:
			}
			silent := false
			if st, err := os.Stat(console); err != nil || st.Size() == 0 {
				silent = true
			}
			if accel == "kvm" && silent && time.Since(start) > 10*time.Second {
				fmt.Println("KVM printed nothing in 10 s: using TCG")
				break
			}
			if time.Since(start) > 4*time.Minute {
				cmd.Process.Kill()
				return nil, fmt.Errorf("%s: the guest agent did not answer in 4 minutes (console: %s)", name, console)
			}
			time.Sleep(time.Second)
		}
		cmd.Process.Kill()
		vm.Wait()
	}
	return nil, fmt.Errorf("%s did not boot", name)
}

// guest* talk to the guest agent of the VM in dir, one connection per call
// (QEMU serves the agent's socket to one client at a time, and the worker
// needs it during backups).
func guestPing(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := qga.Dial(ctx, filepath.Join(dir, "qga.sock"))
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Ping(ctx)
}

func guestSh(dir, script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := qga.Dial(ctx, filepath.Join(dir, "qga.sock"))
	if err != nil {
		return "", err
	}
	defer c.Close()
	r, err := c.Exec(ctx, qga.Command{Path: "/bin/sh", Args: []string{"-c", script}})
	if err == nil && r.ExitCode != 0 {
		err = fmt.Errorf("exit %d: %s", r.ExitCode, r.Stderr)
	}
	if err != nil {
		return "", fmt.Errorf("in the guest: %s: %w", strings.SplitN(script, "\n", 2)[0], err)
	}
	return strings.TrimSpace(string(r.Stdout)), nil
}

func guestSpawn(dir, script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := qga.Dial(ctx, filepath.Join(dir, "qga.sock"))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Spawn(ctx, qga.Command{Path: "/bin/sh", Args: []string{"-c", script}})
	return err
}
