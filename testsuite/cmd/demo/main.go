// Command demo runs vmvault's main job end to end on the embedded defaults
// (Temporal dev server, local vault, images platform) with the real
// binaries: sample VM, full backup, some changes, incremental backup,
// restore to a new VM, bit-for-bit check. It exits 0 only if all held.
//
// It is what `make demo` runs. KEEP=1 leaves the dev server (UI on :8233)
// and the worker running.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmvault/vmvault/testsuite/harness"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

var (
	bin     = harness.BinDir()
	workDir string
	env     []string
	procs   []*exec.Cmd
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "qemu" {
		err = runQEMU()
	} else {
		err = run()
	}
	if os.Getenv("KEEP") != "1" || err != nil {
		stopAll()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo FAILED:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("\n==> "+format+"\n", a...) }

func run() error {
	port, ui, err := setup("demo-work")
	if err != nil {
		return err
	}
	step("starting the worker (central queue + host queue vmvault-host-local)")
	if err := start("worker", filepath.Join(bin, "vmvault-worker")); err != nil {
		return err
	}

	vms := filepath.Join(workDir, "vms")
	step("creating sample VM web01: ext4 OS disk (mke2fs -d), data disk with mixed data, temp disk")
	if _, err := vmfixture.Create(vms, vmfixture.DefaultSpec("web01")); err != nil {
		return err
	}
	if err := show("vm", "list"); err != nil {
		return err
	}

	step("vmvault backup web01 --wait   (first backup: full)")
	full, err := backup("web01")
	if err != nil {
		return err
	}
	step("changing 8 MiB of the data disk and a few bytes of the OS disk")
	if err := vmfixture.Mutate(vms, "web01", 100, 8, 1); err != nil {
		return err
	}
	step("vmvault backup web01 --wait   (incremental: checksum comparison against the full)")
	incr, err := backup("web01")
	if err != nil {
		return err
	}
	if incr.Type != "incremental" || incr.Totals.NewBytes > 12<<20 || incr.Totals.NewBytes < 8<<20 {
		return fmt.Errorf("incremental backup uploaded %d bytes (type %s): want about the 8 MiB changed", incr.Totals.NewBytes, incr.Type)
	}
	fmt.Printf("incremental moved %.1f MiB of %.1f MiB of data (full moved %.1f MiB)\n",
		mib(incr.Totals.NewBytes), mib(incr.Totals.DataBytes), mib(full.Totals.NewBytes))

	step("vmvault restore %s --new-vm web01-restored --wait", incr.RecoveryPoint)
	if err := show("restore", incr.RecoveryPoint, "--new-vm", "web01-restored", "--wait"); err != nil {
		return err
	}
	step("verifying every backed-up disk bit for bit (sha256)")
	for _, d := range []string{"os", "data0"} {
		a, err := vmfixture.SHA256(filepath.Join(vms, "web01", d+".raw"))
		if err != nil {
			return err
		}
		b, err := vmfixture.SHA256(filepath.Join(vms, "web01-restored", d+".raw"))
		if err != nil {
			return err
		}
		if a != b {
			return fmt.Errorf("disk %s: restored sha256 %s differs from source %s", d, b, a)
		}
		fmt.Printf("%-6s %s  identical\n", d, a)
	}
	if z, err := allZero(filepath.Join(vms, "web01-restored", "temp.raw")); err != nil || !z {
		return fmt.Errorf("temp disk did not come back empty (err %v)", err)
	}
	fmt.Println("temp   not backed up, restored empty")

	step("vmvault protect web01 --policy default   (a Temporal Schedule backs it up daily, staggered)")
	if err := show("protect", "web01", "--policy", "default"); err != nil {
		return err
	}
	if err := show("protected"); err != nil {
		return err
	}
	schedules, err := exec.Command(filepath.Join(bin, "temporal"), "schedule", "list", "--address", "127.0.0.1:"+port).CombinedOutput()
	if err != nil || !strings.Contains(string(schedules), "protect-web01") {
		return fmt.Errorf("temporal schedule list does not show protect-web01 (%v):\n%s", err, schedules)
	}
	fmt.Printf("temporal schedule list:\n%s", schedules)

	step("vmvault rp list web01")
	if err := show("rp", "list", "web01"); err != nil {
		return err
	}
	step("vmvault job list")
	if err := show("job", "list"); err != nil {
		return err
	}
	step("vmvault vault stats")
	if err := show("vault", "stats"); err != nil {
		return err
	}
	fmt.Printf("\ndemo OK: full %s, incremental %s (moved %.1f MiB), restored bit-exact to web01-restored\n",
		full.RecoveryPoint, incr.RecoveryPoint, mib(incr.Totals.NewBytes))
	fmt.Printf("Temporal UI: http://localhost:%s/namespaces/default/workflows\n", ui)
	if os.Getenv("KEEP") == "1" {
		fmt.Printf("KEEP=1: dev server and worker keep running; try\n  VMVAULT_DATA_DIR=%s VMVAULT_VAULT_PASSPHRASE='demo passphrase' bin/vmvault job list\n", workDir)
	}
	return nil
}

// setup makes a fresh work folder named dir, starts the Temporal dev server
// and initializes the vault there.
func setup(dir string) (port, ui string, err error) {
	wd, _ := os.Getwd()
	workDir = filepath.Join(wd, dir)
	if err := os.RemoveAll(workDir); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return "", "", err
	}
	port = envOr("DEMO_TEMPORAL_PORT", "7233")
	ui = envOr("DEMO_UI_PORT", "8233")
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
		c.Close()
		return "", "", fmt.Errorf("port %s is taken (a dev server from 'make up' or an earlier KEEP=1 demo?): stop it or set DEMO_TEMPORAL_PORT", port)
	}
	env = append(os.Environ(),
		"VMVAULT_DATA_DIR="+workDir,
		"VMVAULT_TEMPORAL_ADDRESS=127.0.0.1:"+port,
		"VMVAULT_VAULT_PASSPHRASE=demo passphrase",
	)
	step("starting Temporal dev server (UI http://localhost:%s)", ui)
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", port, "--ui-port", ui,
		"--db-filename", filepath.Join(workDir, "temporal.db"), "--log-level", "warn"}
	for _, sa := range harness.SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	if err := start("temporal", filepath.Join(bin, "temporal"), args...); err != nil {
		return "", "", err
	}
	if err := waitPort("127.0.0.1:"+port, 90*time.Second); err != nil {
		return "", "", err
	}

	step("vmvault vault init")
	if err := show("vault", "init"); err != nil {
		return "", "", err
	}
	return port, ui, nil
}

func backup(vm string, args ...string) (workflows.BackupVMResult, error) {
	var res workflows.BackupVMResult
	out, err := capture(append([]string{"backup", vm, "--wait", "--json"}, args...)...)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("backup output: %w", err)
	}
	t := res.Totals
	fmt.Printf("recovery point %s: %s, %s; scanned %.1f MiB, changed %.1f MiB, uploaded %.1f MiB, stored %.1f MiB\n",
		res.RecoveryPoint, res.Type, res.Consistency, mib(t.ScannedBytes), mib(t.ChangedBytes), mib(t.NewBytes), mib(t.StoredBytes))
	return res, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func cli(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, "vmvault"), args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	return cmd
}

func show(args ...string) error {
	cmd := cli(args...)
	cmd.Stdout = os.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("vmvault %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func capture(args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := cli(args...)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("vmvault %s: %w", strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

func start(name, path string, args ...string) error {
	log, err := os.Create(filepath.Join(workDir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w (run 'make tools build')", name, err)
	}
	procs = append(procs, cmd)
	fmt.Printf("%s running (pid %d, log %s)\n", name, cmd.Process.Pid, log.Name())
	return nil
}

func stopAll() {
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
		}
	}
}

func waitPort(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for ctx.Err() == nil {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			time.Sleep(time.Second) // frontend up; let namespaces settle
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("temporal dev server did not start: see demo-work/temporal.log")
}

func allZero(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return len(bytes.Trim(b, "\x00")) == 0, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
