package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
	"github.com/vmvault/vmvault/testsuite/harness"
	"github.com/vmvault/vmvault/workflows"
)

// The real binaries, built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmvault-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root := filepath.Dir(harness.BinDir())
	for out, pkg := range map[string]string{"vmvault": "./starter", "vmvault-worker": "./worker"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	reportFaults()
	os.RemoveAll(dir)
	os.Exit(code)
}

const passphrase = "e2e passphrase"

// env is one deployment: a Temporal dev server, a vault (fs or S3) and the
// settings every worker and CLI run of the test shares.
type env struct {
	t       *testing.T
	tp      *harness.Temporal
	dataDir string
	vars    []string
	be      storage.Backend
	// minio and bucket hold an s3 env's vault.
	minio  *harness.MinIO
	bucket string
}

type envOpts struct {
	s3 bool
	// initArgs go to 'vault init' (e.g. a small pack size).
	initArgs []string
	// objectLock creates the s3 vault's bucket with Object Lock enabled.
	objectLock bool
	// temporal, when set, is a shared server (one namespace per env, see
	// harness.Temporal.In) instead of one of the env's own.
	temporal *harness.Temporal
	// vaultDir puts a directory vault there instead of dataDir/vault.
	vaultDir string
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	tp := o.temporal
	if tp == nil {
		tp = harness.StartTemporal(t)
	}
	e := &env{t: t, tp: tp, dataDir: t.TempDir()}
	e.vars = []string{
		"VMVAULT_TEMPORAL_ADDRESS=" + e.tp.HostPort,
		"VMVAULT_TEMPORAL_NAMESPACE=" + e.tp.Namespace,
		"VMVAULT_DATA_DIR=" + e.dataDir,
		"VMVAULT_VAULT_PASSPHRASE=" + passphrase,
		"VMVAULT_HEARTBEAT_TIMEOUT=5s",
	}
	if o.s3 {
		m := harness.StartMinIO(t)
		bucket := newBucket(t, m, o.objectLock)
		e.minio, e.bucket = m, bucket
		e.vars = append(e.vars,
			"VMVAULT_VAULT=s3://"+bucket+"/vault",
			"VMVAULT_S3_ENDPOINT="+m.Endpoint,
			"VMVAULT_S3_REGION="+m.Region,
			"VMVAULT_S3_PATH_STYLE=true",
			"AWS_ACCESS_KEY_ID="+m.AccessKey,
			"AWS_SECRET_ACCESS_KEY="+m.SecretKey,
		)
		be, err := s3.New(context.Background(), withPrefix(m.Config(bucket), "vault"))
		if err != nil {
			t.Fatal(err)
		}
		e.be = be
	} else {
		dir := filepath.Join(e.dataDir, "vault")
		if o.vaultDir != "" {
			dir = o.vaultDir
			e.vars = append(e.vars, "VMVAULT_VAULT=file://"+dir)
		}
		be, err := fs.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		e.be = be
	}
	e.mustCLI(append([]string{"vault", "init"}, o.initArgs...)...)
	return e
}

func withPrefix(c s3.Config, p string) s3.Config { c.Prefix = p; return c }

func (e *env) vmsRoot() string { return filepath.Join(e.dataDir, "vms") }

func (e *env) environ(extra []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VMVAULT_") && !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return append(append(out, e.vars...), extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

// cli runs the real vmvault binary.
func (e *env) cli(args ...string) result {
	return e.cliEnv(nil, args...)
}

func (e *env) cliEnv(extra []string, args ...string) result {
	e.t.Helper()
	r, err := e.runCLI(5*time.Minute, extra, args...)
	if err != nil {
		e.t.Fatalf("vmvault %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// runCLI runs the vmvault binary for at most timeout; err is set only when
// it could not run or did not exit by itself.
func (e *env) runCLI(timeout time.Duration, extra []string, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "vmvault"), args...)
	cmd.Env = e.environ(extra)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
		return r, nil
	}
	return r, err
}

func (e *env) mustCLI(args ...string) string {
	e.t.Helper()
	return e.mustCLIEnv(nil, args...)
}

func (e *env) mustCLIEnv(extra []string, args ...string) string {
	e.t.Helper()
	r := e.cliEnv(extra, args...)
	if r.code != 0 {
		e.t.Fatalf("vmvault %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// failCLI runs a command that must fail with a one-line error containing want.
func (e *env) failCLI(want string, args ...string) string {
	e.t.Helper()
	r := e.cli(args...)
	if r.code == 0 {
		e.t.Fatalf("vmvault %s succeeded, want failure with %q\nstdout: %s", strings.Join(args, " "), want, r.stdout)
	}
	lines := nonProgressLines(r.stderr)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "vmvault: ") || !strings.Contains(lines[0], want) {
		e.t.Fatalf("vmvault %s: want one error line containing %q, got:\n%s", strings.Join(args, " "), want, r.stderr)
	}
	return lines[0]
}

// nonProgressLines drops the job and progress lines --wait prints.
func nonProgressLines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" || strings.HasPrefix(l, "[") || strings.Contains(l, " job ") && strings.Contains(l, "(run ") {
			continue
		}
		out = append(out, l)
	}
	return out
}

type worker struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
}

// startWorker starts the real worker binary and waits until it polls.
func (e *env) startWorker(extra []string, args ...string) *worker {
	e.t.Helper()
	logf, err := os.CreateTemp(e.dataDir, "worker-*.log")
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "vmvault-worker"), args...)
	cmd.Env = e.environ(extra)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	w := &worker{cmd: cmd, log: logf.Name(), done: done}
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(w.log)
			e.t.Logf("worker %v log:\n%s", args, tail(string(b), 4000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(w.log)
		if strings.Contains(string(b), "worker started") {
			return w
		}
		select {
		case <-done:
			e.t.Fatalf("worker %v exited: %s", args, b)
		case <-time.After(100 * time.Millisecond):
		}
	}
	e.t.Fatalf("worker %v did not start", args)
	return nil
}

func (w *worker) kill() {
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// openVault opens the test's vault directly, to look inside.
func (e *env) openVault() *vault.Vault {
	e.t.Helper()
	v, err := vault.Open(context.Background(), e.be, []byte(passphrase))
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) backup(vm string, args ...string) workflows.BackupVMResult {
	e.t.Helper()
	out := e.mustCLI(append([]string{"backup", vm, "--wait", "--json"}, args...)...)
	var res workflows.BackupVMResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		e.t.Fatalf("backup output %q: %v", out, err)
	}
	return res
}

func (e *env) objects(prefix string) map[string]int64 {
	e.t.Helper()
	m := map[string]int64{}
	if err := e.be.List(context.Background(), prefix, func(k string, n int64) error { m[k] = n; return nil }); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
