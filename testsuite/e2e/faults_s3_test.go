package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/testsuite/faultproxy"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// faultJobs counts the jobs a scenario ran through its faults.
type faultJobs struct {
	completed, failedCleanly, restores int
}

// jobCLI runs a job command that faults may fail: it returns its stdout and
// true on success; a failure must be one line "vmvault: ..." (a clean
// failure), anything else fails the test.
func (e *env) jobCLI(n *faultJobs, args ...string) (string, bool) {
	e.t.Helper()
	r := e.cli(args...)
	if r.code == 0 {
		n.completed++
		return r.stdout, true
	}
	lines := nonProgressLines(r.stderr)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "vmvault: ") {
		e.t.Fatalf("vmvault %s failed without a one-line reason: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	n.failedCleanly++
	e.t.Logf("vmvault %s failed cleanly: %s", strings.Join(args, " "), lines[0])
	return lines[0], false
}

// retryJob runs a job command until it succeeds, at most tries times; a job
// that never succeeds fails the test.
func (e *env) retryJob(n *faultJobs, tries int, args ...string) string {
	e.t.Helper()
	var last string
	for range tries {
		out, ok := e.jobCLI(n, args...)
		if ok {
			return out
		}
		last = out
	}
	e.t.Fatalf("vmvault %s failed %d times, last: %s", strings.Join(args, " "), tries, last)
	return ""
}

func (e *env) faultBackup(n *faultJobs, vm string) workflows.BackupVMResult {
	e.t.Helper()
	out := e.retryJob(n, 3, "backup", vm, "--wait", "--json")
	var res workflows.BackupVMResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		e.t.Fatalf("backup output %q: %v", out, err)
	}
	return res
}

// faultRestore restores rp as disk images (retrying clean failures in a new
// folder) and compares them with want; it returns false on a mismatch.
func (e *env) faultRestore(n *faultJobs, rp string, want map[string]string) bool {
	e.t.Helper()
	for try := range 3 {
		dir := filepath.Join(e.t.TempDir(), fmt.Sprintf("restore%d", try))
		if _, ok := e.jobCLI(n, "restore", rp, "--disks", dir, "--wait"); !ok {
			continue
		}
		n.restores++
		got := diskHashes(e.t, dir)
		for d, h := range want {
			if got[d] != h {
				e.t.Errorf("recovery point %s: disk %s restored with sha256 %s, source had %s", rp, d, got[d], h)
				return false
			}
		}
		return true
	}
	e.t.Fatalf("restore %s failed 3 times", rp)
	return false
}

type faultPoint struct {
	rp   string
	hash map[string]string
}

// The worker's S3 traffic runs through a proxy that answers some requests
// with SlowDown or InternalError, resets connections (before and after the
// server applied the request), delays replies, truncates GET bodies and
// hides fresh keys from listings. Backups (full and incremental), restores,
// vault check --read-data and GC run through it: each job completes or fails
// with a one-line reason, every point restores bit-exact, the index holds no
// blob twice, and check finds nothing damaged. Then MinIO itself stops for a
// few seconds in the middle of a transfer: the job completes.
func TestFaultsS3Proxy(t *testing.T) {
	r := faultRand(t)
	e := newEnv(t, envOpts{s3: true, initArgs: []string{"--pack-size", "2097152"}})
	plan := faultproxy.Plan{
		Seed:      r.Int63(),
		Errors:    0.04,
		Resets:    0.03,
		Slow:      0.02,
		SlowDelay: 1500 * time.Millisecond,
		Truncate:  0.04,
		ListLag:   3 * time.Second,
	}
	if faultsFull() {
		plan.Errors, plan.Resets, plan.Truncate = 0.08, 0.05, 0.08
	}
	px, err := faultproxy.New(e.minio.Endpoint, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	e.startWorker([]string{"VMVAULT_S3_ENDPOINT=" + px.URL})
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("s3f", 31)); err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(e.vmsRoot(), "s3f")
	px.Enable()

	var jobs faultJobs
	var points []faultPoint
	rounds := 2
	if faultsFull() {
		rounds = 5
	}
	for i := range rounds {
		if i > 0 {
			if err := vmfixture.Mutate(e.vmsRoot(), "s3f", int64(8*i), 6, uint64(100+i)); err != nil {
				t.Fatal(err)
			}
		}
		res := e.faultBackup(&jobs, "s3f")
		// A listing that lags may hide the point written a moment ago: then
		// the backup is a full one, or an incremental of an older point
		// (blocks are named by content, so either restores whole); its
		// parent must still be one of this VM's points.
		known := false
		for _, p := range points {
			known = known || p.rp == res.Parent
		}
		switch {
		case i == 0 && res.Type != "full":
			t.Fatalf("first backup is %s", res.Type)
		case res.Type == "incremental" && !known:
			t.Fatalf("backup %d has parent %q, not an earlier point", i, res.Parent)
		case i > 0 && (res.Type != "incremental" || res.Parent != points[i-1].rp):
			t.Logf("backup %d is %s of %q: the lagging listing hid the newest point; %d new bytes", i, res.Type, res.Parent, res.Totals.NewBytes)
		}
		points = append(points, faultPoint{res.RecoveryPoint, diskHashes(t, vmDir)})
	}
	wrong := 0
	for _, p := range points {
		if !e.faultRestore(&jobs, p.rp, p.hash) {
			wrong++
		}
	}
	// Check reads every block through the faults: a read that failed in
	// transit is not damage.
	if out := e.retryJob(&jobs, 3, "vault", "check", "--read-data"); !strings.Contains(out, "every recovery point can be restored") {
		t.Fatalf("vault check through faults:\n%s", out)
	}
	// GC with nothing to free but its listings lagging and its reads failing:
	// every point still restores afterwards.
	e.retryJob(&jobs, 3, "vault", "gc", "--grace", "1s", "--wait")
	px.Disable()
	c := px.Counts()
	t.Logf("proxy: %v", c)

	v := e.openVault()
	idx, err := v.Repo().Index(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dups := idx.Stats().Duplicates
	if dups != 0 {
		t.Errorf("%d blobs stored twice after the faults", dups)
	}
	if out := e.mustCLI("vault", "check", "--read-data"); !strings.Contains(out, "every recovery point can be restored") {
		t.Fatalf("vault check after the faults:\n%s", out)
	}
	for _, p := range points {
		if !e.faultRestore(&jobs, p.rp, p.hash) {
			wrong++
		}
	}
	if c.Faults() == 0 {
		t.Fatal("the proxy injected no fault")
	}
	recordFaults(t, faultOutcome{
		Scenario:      "S3 fault proxy: 5xx, resets, slow replies, truncated bodies, lagging listings",
		Faults:        int(c.Faults()),
		Completed:     jobs.completed,
		FailedCleanly: jobs.failedCleanly,
		Restores:      jobs.restores,
		WrongRestores: wrong,
		Leaks:         dups,
	})

	t.Run("MinIORestart", func(t *testing.T) { minioRestart(t, e, vmDir, px) })
}

// minioRestart stops MinIO for a few seconds while a backup transfers and
// starts it again on the same data and port: the backup completes and
// restores bit-exact.
func minioRestart(t *testing.T, e *env, vmDir string, px *faultproxy.Proxy) {
	var jobs faultJobs
	outages := 1
	if faultsFull() {
		outages = 3
	}
	if err := vmfixture.Mutate(e.vmsRoot(), "s3f", 0, 64, 555); err != nil {
		t.Fatal(err)
	}
	want := diskHashes(t, vmDir)
	before := len(e.objects("packs/"))
	px.SetPlan(faultproxy.Plan{Seed: 1, Slow: 1, SlowDelay: 100 * time.Millisecond}) // pace the transfer
	px.Enable()
	e.mustCLI("backup", "s3f")
	c := e.tp.Client(e.t)
	ctx := context.Background()
	id := workflows.BackupWorkflowID("s3f")
	injected := 0
	for i := range outages {
		deadline := time.Now().Add(time.Minute)
		for len(e.objects("packs/")) < before+2*(i+1) {
			if time.Now().After(deadline) {
				t.Fatal("the backup stored no pack")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if d, err := c.DescribeWorkflowExecution(ctx, id, ""); err != nil || d.WorkflowExecutionInfo.CloseTime != nil {
			t.Logf("backup ended before outage %d (%v)", i+1, err)
			break
		}
		e.minio.Stop()
		injected++
		time.Sleep(4 * time.Second)
		e.minio.Start()
	}
	px.Disable()
	var res workflows.BackupVMResult
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		line := strings.SplitN(err.Error(), "\n", 2)[0]
		t.Fatalf("backup across a MinIO restart: %s", line)
	}
	jobs.completed++
	t.Logf("backup across %d MinIO restarts: %s, %d new bytes, notes %q", injected, res.RecoveryPoint, res.Totals.NewBytes, res.Notes)
	wrong := 0
	if !e.faultRestore(&jobs, res.RecoveryPoint, want) {
		wrong++
	}
	v := e.openVault()
	idx, err := v.Repo().Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dups := idx.Stats().Duplicates
	if dups != 0 {
		t.Errorf("%d blobs stored twice after the MinIO restart", dups)
	}
	if injected == 0 {
		t.Fatal("no MinIO restart was injected")
	}
	recordFaults(t, faultOutcome{
		Scenario:      "MinIO restarted mid-transfer",
		Faults:        injected,
		Completed:     jobs.completed,
		FailedCleanly: jobs.failedCleanly,
		Restores:      jobs.restores,
		WrongRestores: wrong,
		Leaks:         dups,
	})
}
