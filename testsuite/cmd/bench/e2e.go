package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vmvault/vmvault/testsuite/harness"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// e2e measures a no-change backup end to end: the vmvault CLI starts the
// BackupVM workflow on a Temporal dev server and waits for it, and a real
// worker runs it. Once for the fixture's small VM (256 MiB OS + 512 MiB
// data disk), once for the bench image. Each VM gets an untimed full first.
type e2e struct {
	bin, dir string
	env      []string
	procs    []*exec.Cmd
	worker   *exec.Cmd
}

func runE2E(ctx context.Context, e env, w *workload, drop *cacheDropper) ([]row, error) {
	x := &e2e{bin: harness.BinDir(), dir: filepath.Join(e.work, "e2e")}
	for _, b := range []string{"temporal", "vmvault", "vmvault-worker"} {
		if _, err := os.Stat(filepath.Join(x.bin, b)); err != nil {
			return nil, fmt.Errorf("%s is missing (make tools build): %w", b, err)
		}
	}
	defer x.stop()
	vms := filepath.Join(x.dir, "vms")
	if err := os.MkdirAll(filepath.Join(vms, "bench"), 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ui, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	x.env = append(os.Environ(), "VMVAULT_DATA_DIR="+x.dir, "VMVAULT_TEMPORAL_ADDRESS="+addr,
		"VMVAULT_VAULT_PASSPHRASE="+passphrase, "VMVAULT_IMAGES_ROOT="+vms)
	args := []string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port), "--ui-port", strconv.Itoa(ui),
		"--db-filename", filepath.Join(x.dir, "temporal.db"), "--log-level", "warn"}
	for _, sa := range harness.SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	if _, err := x.start("temporal", args...); err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, addr, 90*time.Second); err != nil {
		return nil, err
	}
	if out, err := x.cli(ctx, "vault", "init").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vault init: %v: %s", err, out)
	}
	if x.worker, err = x.start("vmvault-worker"); err != nil {
		return nil, err
	}
	if _, err := vmfixture.Create(vms, vmfixture.DefaultSpec("small")); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(vms, "bench", "vm.json"), []byte(`{"name":"bench","os":"linux","cpu":2,"memory_mb":1024,"power_state":"stopped","disks":[{"name":"os","role":"os","file":"os.raw"}]}`), 0o644); err != nil {
		return nil, err
	}
	if err := os.Link(w.Churn5, filepath.Join(vms, "bench", "os.raw")); err != nil {
		return nil, err
	}
	var rows []row
	for _, vm := range []string{"small", "bench"} {
		if _, err := x.backup(ctx, vm); err != nil {
			return nil, fmt.Errorf("first backup of %s: %w", vm, err)
		}
		drop.drop()
		r, err := x.backup(ctx, vm)
		if err != nil {
			return nil, fmt.Errorf("no-change backup of %s: %w", vm, err)
		}
		r.Step = "no change, CLI + dev server"
		r.Tool = "vmvault e2e " + vm
		rows = append(rows, r)
	}
	return rows, nil
}

// backup runs `vmvault backup vm --wait --json` and measures the CLI; the
// peak RSS is the worker's (VmHWM since it started).
func (x *e2e) backup(ctx context.Context, vm string) (row, error) {
	u, err := measured(ctx, x.cli(ctx, "backup", vm, "--wait", "--json"))
	if err != nil {
		return row{}, err
	}
	var res struct {
		Type   string `json:"type"`
		Totals struct {
			Scanned int64 `json:"scanned_bytes"`
			New     int64 `json:"new_bytes"`
			Stored  int64 `json:"stored_bytes"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(u.Stdout, &res); err != nil {
		return row{}, fmt.Errorf("backup output: %w: %s", err, u.Stdout)
	}
	r := rowOf(u)
	r.Read, r.Uploaded, r.Stored = res.Totals.Scanned, res.Totals.New, res.Totals.Stored
	r.RSS = hwm(x.worker.Process.Pid)
	r.Note = fmt.Sprintf("%s; read = scanned by the worker; RSS = worker's peak so far", res.Type)
	return r, nil
}

func (x *e2e) cli(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, filepath.Join(x.bin, "vmvault"), args...)
	c.Env = x.env
	return c
}

func (x *e2e) start(name string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(x.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	c := exec.Command(filepath.Join(x.bin, name), args...)
	c.Env, c.Stdout, c.Stderr = x.env, log, log
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	x.procs = append(x.procs, c)
	return c, nil
}

func (x *e2e) stop() {
	for i := len(x.procs) - 1; i >= 0; i-- {
		p := x.procs[i]
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}

func waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			time.Sleep(time.Second) // frontend up; let the namespace settle
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("temporal dev server at %s did not start", addr)
}

// hwm is a live process's peak RSS (VmHWM), bytes.
func hwm(pid int) int64 {
	done := make(chan struct{})
	close(done)
	return sampleHWM(pid, done)
}
