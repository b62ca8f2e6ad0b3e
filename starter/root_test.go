package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/workflows"
)

type result struct {
	stdout, stderr string
	code           int
}

// cli runs the root command in-process, as main would, with buffers for
// stdout and stderr and c (if not nil) as the Temporal client.
func cli(t *testing.T, c client.Client, args ...string) result {
	t.Helper()
	t.Setenv("VMVAULT_DATA_DIR", t.TempDir())
	t.Setenv("VMVAULT_VAULT_PASSPHRASE", "unit test passphrase")
	var out, errb bytes.Buffer
	a := &app{out: &out, errOut: &errb, client: c}
	code := a.execute(context.Background(), args)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func oneErrorLine(t *testing.T, r result, code int, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != code || len(lines) != 1 || !strings.HasPrefix(lines[0], "vmvault: ") || !strings.Contains(lines[0], want) {
		t.Fatalf("exit %d, stderr %q: want exit %d and one line 'vmvault: ...%s...'", r.code, r.stderr, code, want)
	}
}

func TestHelpShowsExamples(t *testing.T) {
	for _, args := range [][]string{{"help", "backup"}, {"backup", "--help"}, {"backup", "-h"}} {
		r := cli(t, nil, args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		for _, want := range []string{"Usage:\n  vmvault backup VM [flags]", "Examples:", "vmvault backup web01 --wait", "--keep-snapshot", "--address"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, r.stdout)
			}
		}
	}
}

func TestEveryCommandHasExamples(t *testing.T) {
	for _, cmd := range [][]string{{"vault", "init"}, {"vault", "stats"}, {"vm", "list"}, {"backup"}, {"restore"}, {"rp", "list"}, {"job", "list"}, {"job", "show"}} {
		r := cli(t, nil, append([]string{"help"}, cmd...)...)
		usage := "vmvault " + strings.Join(cmd, " ")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:\n  "+usage) && !strings.Contains(r.stdout, "\n  "+usage+" ") {
			t.Errorf("help %v: exit %d, no example of %q:\n%s", cmd, r.code, usage, r.stdout)
		}
		if !strings.Contains(r.stdout, "--json") {
			t.Errorf("help %v: no --json flag", cmd)
		}
	}
}

func TestNoArgsPrintsUsageAndExits2(t *testing.T) {
	r := cli(t, nil)
	if !strings.Contains(r.stdout, "Available Commands:") || !strings.Contains(r.stdout, "restore") {
		t.Errorf("no usage on stdout: %q", r.stdout)
	}
	oneErrorLine(t, r, 2, "no command")
}

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"bakup", "web01"}, `did you mean "backup"?`},
		{[]string{"vault"}, "vault needs a command"},
		{[]string{"vault", "stat"}, `unknown command "vault stat"`},
		{[]string{"backup"}, "backup takes one VM name (see 'vmvault help backup')"},
		{[]string{"backup", "a", "b"}, "backup takes one VM name"},
		{[]string{"backup", "web01", "--bogus"}, "backup: unknown flag: --bogus"},
		{[]string{"job", "list", "--limit", "many"}, `invalid argument "many" for "--limit"`},
		{[]string{"job", "list", "--kind", "snapshot"}, "--kind: want backup, restore or replicate"},
		{[]string{"job", "show"}, "job show takes one job id"},
		{[]string{"rp", "list", "a", "b"}, "rp list takes at most one VM name"},
		{[]string{"vault", "init", "extra"}, "vault init takes no arguments"},
		{[]string{"restore", "web01/x"}, "restore needs exactly one of --new-vm NAME, --replace, --disks DIR"},
		{[]string{"restore", "web01/x", "--new-vm", "a", "--disks", "d"}, "restore needs exactly one of"},
		{[]string{"restore", "web01/x", "--new-vm", "a", "--vm", "b"}, "--vm goes with --replace"},
		{[]string{"completion", "tcsh"}, `unknown command "completion tcsh"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			oneErrorLine(t, cli(t, nil, tc.args...), 2, tc.want)
		})
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_vmvault", "zsh": "#compdef vmvault", "fish": "complete -c vmvault"} {
		r := cli(t, nil, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, no %q in output", shell, r.code, want)
		}
	}
}

// fakeTemporal records the workflows started and answers them with result
// (or fails them with err). Methods the CLI should not call panic.
type fakeTemporal struct {
	client.Client
	opts   client.StartWorkflowOptions
	input  any
	result any
	err    error
}

func (f *fakeTemporal) ExecuteWorkflow(_ context.Context, opts client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	f.opts, f.input = opts, args[0]
	return fakeRun{id: opts.ID, f: f}, nil
}

func (f *fakeTemporal) QueryWorkflow(context.Context, string, string, string, ...any) (converter.EncodedValue, error) {
	return nil, errors.New("no progress in this test")
}

func (f *fakeTemporal) Close() {}

type fakeRun struct {
	client.WorkflowRun
	id string
	f  *fakeTemporal
}

func (r fakeRun) GetID() string    { return r.id }
func (r fakeRun) GetRunID() string { return "run-1" }
func (r fakeRun) Get(_ context.Context, v any) error {
	if r.f.err != nil {
		return r.f.err
	}
	b, _ := json.Marshal(r.f.result)
	return json.Unmarshal(b, v)
}

func TestBackupFlagsAfterTheVM(t *testing.T) {
	for _, args := range [][]string{
		{"backup", "web01", "--host", "hv02", "--keep-snapshot", "--json"},
		{"backup", "--json", "--host", "hv02", "web01", "--keep-snapshot"},
	} {
		f := &fakeTemporal{}
		r := cli(t, f, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		in := f.input.(workflows.BackupVMInput)
		if in.VM != "web01" || in.Host != "hv02" || !in.KeepSnapshot || f.opts.ID != "backup-web01" {
			t.Errorf("%v: started %+v, id %s", args, in, f.opts.ID)
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got["job"] != "backup-web01" || got["run"] != "run-1" {
			t.Errorf("%v: stdout %q is not the job as JSON (%v)", args, r.stdout, err)
		}
	}
}

func TestBackupDefaultsFromEnvironment(t *testing.T) {
	t.Setenv("VMVAULT_HOST", "hv07")
	t.Setenv("VMVAULT_TASK_QUEUE", "from-env")
	f := &fakeTemporal{}
	r := cli(t, f, "backup", "web01", "--task-queue", "from-flag")
	if r.code != 0 || r.stdout != "started backup job backup-web01 (run run-1)\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if in := f.input.(workflows.BackupVMInput); in.Host != "hv07" || f.opts.TaskQueue != "from-flag" {
		t.Errorf("host %q (want hv07 from VMVAULT_HOST), task queue %q (want the flag's)", in.Host, f.opts.TaskQueue)
	}
}

func TestBackupWaitJSONOnlyOnStdout(t *testing.T) {
	f := &fakeTemporal{result: workflows.BackupVMResult{RecoveryPoint: "web01/20261121T233344Z-cfda7c"}}
	r := cli(t, f, "backup", "web01", "--wait", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var res workflows.BackupVMResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.RecoveryPoint != "web01/20261121T233344Z-cfda7c" {
		t.Errorf("stdout %q: want only the result as JSON (%v)", r.stdout, err)
	}
	if r.stderr != "backup job backup-web01 (run run-1)\n" {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestFailedJobIsOneLineExit1(t *testing.T) {
	cause := temporal.NewNonRetryableApplicationError(`vm "nope" not found`, "VMNotFound", nil)
	f := &fakeTemporal{err: fmt.Errorf("workflow execution error (type: BackupVM): %w", temporal.NewApplicationErrorWithCause("activity error", "", cause))}
	r := cli(t, f, "backup", "nope", "--wait")
	oneErrorLine(t, result{stderr: strings.TrimPrefix(r.stderr, "backup job backup-nope (run run-1)\n"), code: r.code}, 1,
		`backup of vm nope failed: vm "nope" not found (VMNotFound)`)
}

func TestRestoreDisksMode(t *testing.T) {
	f := &fakeTemporal{}
	dir := t.TempDir()
	r := cli(t, f, "restore", "web01/20261121T233345Z-9f6fd2", "--disks", filepath.Base(dir), "--host", "hv02")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	in := f.input.(workflows.RestoreVMInput)
	if in.Mode != workflows.RestoreDisks || !filepath.IsAbs(in.TargetDir) || in.Host != "hv02" || !strings.HasPrefix(f.opts.ID, "restore-disks-") {
		t.Errorf("started %+v as %s", in, f.opts.ID)
	}
	if !strings.HasPrefix(r.stdout, "started restore job restore-disks-") {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestVaultWithoutServer(t *testing.T) {
	t.Setenv("VMVAULT_VAULT", "file://"+filepath.Join(t.TempDir(), "vault"))
	r := cli(t, nil, "vault", "init", "--compression", "zstd", "--json")
	var got struct {
		Vault     string `json:"vault"`
		BlockSize int    `json:"block_size"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil || got.BlockSize != vault.DefaultBlockSize {
		t.Fatalf("vault init: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := cli(t, nil, "rp", "list", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("rp list --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	oneErrorLine(t, cli(t, nil, "rp", "list", "web01"), 1, "vm web01 has no recovery points in "+got.Vault)
	oneErrorLine(t, cli(t, nil, "vault", "init"), 1, "vault already exists")
	t.Setenv("VMVAULT_VAULT_PASSPHRASE", "wrong")
	var out, errb bytes.Buffer
	code := (&app{out: &out, errOut: &errb}).execute(context.Background(), []string{"vault", "stats"})
	oneErrorLine(t, result{stdout: out.String(), stderr: errb.String(), code: code}, 1, "wrong vault key")
}

func TestWarnCorruptGoesToErrOut(t *testing.T) {
	var out, errb bytes.Buffer
	a := &app{out: &out, errOut: &errb}
	err := fmt.Errorf("recoverypoints/web01/x: %w\nrecoverypoints/web01/y: %w", vault.ErrCorrupt, vault.ErrCorrupt)
	if got := a.warnCorrupt(err); got != nil {
		t.Fatalf("warnCorrupt = %v, want nil", got)
	}
	if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "warning: recoverypoints/web01/y") || out.Len() != 0 {
		t.Errorf("stderr %q, stdout %q", errb.String(), out.String())
	}
	if other := errors.New("boom"); a.warnCorrupt(other) != other {
		t.Error("warnCorrupt swallowed an error that is not ErrCorrupt")
	}
}
