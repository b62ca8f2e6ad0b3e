// Package qemutest starts real QEMU processes for tests: a bare machine
// (-machine none) to talk QMP to, or a diskful VM without a guest OS. KVM
// is used only when a probe shows it works; TCG otherwise.
package qemutest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Process is a running QEMU.
type Process struct {
	QMP    string // the QMP socket path
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	once   sync.Once
	waited chan struct{}
}

var (
	probeOnce sync.Once
	probeErr  error
	accel     string
)

// binary returns qemu-system-x86_64 or skips the test saying why.
func binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make deps installs Debian's qemu-system-x86)")
	}
	probeOnce.Do(func() {
		accel = "tcg"
		if run(bin, "kvm") == nil {
			accel = "kvm"
		}
		probeErr = run(bin, accel)
	})
	if probeErr != nil {
		t.Skipf("qemu-system-x86_64 cannot run here: %v", probeErr)
	}
	return bin
}

// run starts a bare machine under accel and quits it through its monitor on stdin.
func run(bin, accel string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-machine", "none", "-nodefaults", "-display", "none", "-accel", accel, "-monitor", "stdio")
	cmd.Stdin = strings.NewReader("quit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -accel %s: %v: %s", bin, accel, err, bytes.TrimSpace(out))
	}
	return nil
}

// Accel is the accelerator tests use: "kvm" when it works, else "tcg".
func Accel(t testing.TB) string {
	binary(t)
	return accel
}

// Start starts qemu-system-x86_64 with a QMP socket in dir and args; it is
// killed when the test ends. It waits until the QMP socket accepts.
func Start(t testing.TB, dir string, args ...string) *Process {
	t.Helper()
	bin := binary(t)
	qmp := filepath.Join(dir, "qmp.sock")
	return StartWith(t, bin, qmp, args...)
}

// StartWith is Start with the QMP socket at qmp; when args hold their own
// -qmp option, it must name qmp. When args hold their own -accel option,
// it replaces Accel's choice.
func StartWith(t testing.TB, bin, qmp string, args ...string) *Process {
	t.Helper()
	if bin == "" {
		bin = binary(t)
	}
	os.Remove(qmp)
	all := []string{"-nodefaults", "-display", "none"}
	if !slices.Contains(args, "-accel") {
		all = append(all, "-accel", Accel(t))
	}
	if !slices.Contains(args, "-qmp") {
		all = append(all, "-qmp", "unix:"+qmp+",server=on,wait=off")
	}
	all = append(all, args...)
	cmd := exec.Command(bin, all...)
	p := &Process{QMP: qmp, cmd: cmd, stderr: &bytes.Buffer{}, waited: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() { cmd.Wait(); close(p.waited) }()
	t.Cleanup(p.Kill)
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.waited:
			t.Fatalf("qemu %s exited: %s", strings.Join(all, " "), p.stderr)
		default:
		}
		if c, err := net.Dial("unix", qmp); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			p.Kill()
			t.Fatalf("qemu's QMP socket %s never answered: %s", qmp, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends QEMU at once (as a crash would) and waits for it.
func (p *Process) Kill() {
	p.once.Do(func() {
		p.cmd.Process.Kill()
		<-p.waited
	})
}

// Wait waits for QEMU to exit by itself (after quit) for up to d.
func (p *Process) Wait(d time.Duration) bool {
	select {
	case <-p.waited:
		return true
	case <-time.After(d):
		return false
	}
}

// Output is what QEMU wrote so far.
func (p *Process) Output() string { return p.stderr.String() }
