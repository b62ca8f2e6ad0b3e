package harness

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinDir is the directory holding the pinned server binaries: $VMVAULT_BIN_DIR
// if set, else bin/ in the module root (the nearest directory above the
// working directory that has a go.mod).
func BinDir() string {
	if d := os.Getenv("VMVAULT_BIN_DIR"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return "bin"
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join(wd, "bin")
		}
		dir = parent
	}
}

// binary returns the path of a pinned binary or fails the test.
func binary(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(BinDir(), name)
	fi, err := os.Stat(p)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s not found at %s: run `make tools` (or set VMVAULT_BIN_DIR)", name, p)
	}
	return p
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // handed out by FreePort in this process
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier FreePort call in this process returned.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !ports[port] {
			ports[port] = true
			return port
		}
	}
	t.Fatalf("find free port: no unused port after 100 tries")
	return 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// tailBuffer keeps the last max bytes written to it: a server's log tail
// for failure messages, without holding a whole log in memory.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// process is a server started for one test.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// startProcess starts bin/name with args and extra environment and stops it
// (SIGTERM, then SIGKILL after 10 s) when the test ends. The log tail is
// printed if the test failed.
func startProcess(t testing.TB, name string, args []string, env []string) *process {
	t.Helper()
	p := &process{
		name: name,
		cmd:  exec.Command(binary(t, name), args...),
		log:  &tailBuffer{max: 64 << 10},
		done: make(chan struct{}),
	}
	p.cmd.Env = append(os.Environ(), env...) // later entries win
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log tail:\n%s", name, p.log.String())
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// errPortTaken: the process exited because a port it was given was taken
// between FreePort and its bind (another test process got it first).
var errPortTaken = errors.New("port taken")

// awaitReady polls ready until it returns nil, the process exits or
// timeout passes, and returns the last error with the log tail. A process that exited
// because its port was taken wraps errPortTaken, so callers can try again
// on other ports.
func (p *process) awaitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			log := p.log.String()
			if strings.Contains(log, "address already in use") || strings.Contains(log, "port is already in use") { // Temporal's, MinIO's
				return fmt.Errorf("%s exited: %w:\n%s", p.name, errPortTaken, log)
			}
			return fmt.Errorf("%s exited before it was ready (%v): last check: %v\nlog tail:\n%s", p.name, p.err, err, log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v\nlog tail:\n%s", p.name, timeout, err, p.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startOnFreePorts calls start, which takes fresh FreePorts each time,
// until its process is ready or it failed for another reason than a port
// taken under it (at most 5 tries).
func startOnFreePorts(t testing.TB, start func() error) {
	t.Helper()
	var err error
	for range 5 {
		if err = start(); !errors.Is(err, errPortTaken) {
			break
		}
		t.Logf("retrying on other ports: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

var errNotReady = errors.New("not ready")

func statusErr(url string, code int) error {
	return fmt.Errorf("GET %s: status %d: %w", url, code, errNotReady)
}
