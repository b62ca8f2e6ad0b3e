package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// The load suite: many small jobs on one worker, as a night of schedules
// brings them. VMVAULT_LOAD=full (make load) runs 200 concurrent backups and
// a burst of 1,000 scheduled starts; make test runs a small form. Each test
// logs a "load:" line with its rate and the worker's peak memory, and
// VMVAULT_LOAD_REPORT, when set, collects those lines in a file.

func loadFull() bool { return os.Getenv("VMVAULT_LOAD") == "full" }

// loadSize is n under VMVAULT_LOAD=full, else short.
func loadSize(full, short int) int {
	if loadFull() {
		return full
	}
	return short
}

var loadReport sync.Mutex

// reportLoad logs a figure line and appends it to VMVAULT_LOAD_REPORT.
func reportLoad(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log("load: " + line)
	f := os.Getenv("VMVAULT_LOAD_REPORT")
	if f == "" {
		return
	}
	loadReport.Lock()
	defer loadReport.Unlock()
	fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("load report: %v", err)
		return
	}
	defer fh.Close()
	fmt.Fprintf(fh, "- %s: %s\n", t.Name(), line)
}

// tinySpec is a small 2-disk VM (an ext4 OS disk and a data disk, no temp
// disk): the job's overhead, not its data, is what a load test measures.
func tinySpec(name string, seed uint64) vmfixture.Spec {
	return vmfixture.Spec{Name: name, OSSize: 4 * mib, DataDisks: []int64{2 * mib}, Seed: seed}
}

// makeFleet creates n tiny VMs named vm0000... in parallel and returns
// their disks' hashes.
func makeFleet(t *testing.T, root string, n int) []map[string]string {
	t.Helper()
	hashes := make([]map[string]string, n)
	g := errgroup.Group{}
	g.SetLimit(4)
	for i := range n {
		g.Go(func() error {
			name := fmt.Sprintf("vm%04d", i)
			if _, err := vmfixture.Create(root, tinySpec(name, uint64(1000+i))); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			hashes[i] = map[string]string{}
			for _, d := range []string{"os", "data0"} {
				h, err := vmfixture.SHA256(filepath.Join(root, name, d+".raw"))
				if err != nil {
					return err
				}
				hashes[i][d] = h
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return hashes
}

// memWatch samples a process's resident memory until stopped; peak is the
// largest VmRSS seen and hwm the kernel's high-water mark at the end.
type memWatch struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	peak int64
	hwm  int64
}

func watchMem(pid int) *memWatch {
	m := &memWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := procStatusKiB(pid, "VmRSS:"); rss > m.peak {
				m.peak = rss
			}
			select {
			case <-m.stop:
				m.hwm = procStatusKiB(pid, "VmHWM:")
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// finish stops the sampling and returns the peak in MiB.
func (m *memWatch) finish() int64 {
	close(m.stop)
	<-m.done
	return max(m.peak, m.hwm) / 1024
}

func procStatusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field) {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// startBusy retries an operation the loaded dev server timed out.
func startBusy[T any](ctx context.Context, op func() (T, error)) (T, error) {
	var v T
	var err error
	for try := 0; try < 10; try++ {
		if v, err = op(); err == nil || !busy(err) {
			return v, err
		}
		time.Sleep(time.Second)
	}
	return v, err
}

// maxWorkerMiB bounds the worker's resident memory under load: 200 jobs at
// once must not grow it past what a small host gives a backup agent.
const maxWorkerMiB = 1024

// 200 concurrent on-demand backups of small 2-disk VMs on one worker
// (make load; 24 in make test): every one completes with a recovery point,
// a seeded sample restores bit-exact, no blob is stored twice, the
// worker's memory stays under maxWorkerMiB, and the rate is reported.
func TestLoadConcurrentBackups(t *testing.T) {
	n := loadSize(200, 24)
	e := newEnv(t, envOpts{})
	hashes := makeFleet(t, e.vmsRoot(), n)
	w := e.startWorker(nil)
	mem := watchMem(w.cmd.Process.Pid)
	c := e.tp.Client(t)
	ctx := context.Background()

	start := time.Now()
	runs := make([]client.WorkflowRun, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			in := workflows.BackupVMInput{VM: fmt.Sprintf("vm%04d", i), Host: "local", HeartbeatTimeout: 30 * time.Second}
			run, err := startBusy(gctx, func() (client.WorkflowRun, error) {
				r, err := c.ExecuteWorkflow(gctx, workflows.BackupStartOptions("vmvault", in, 0), workflows.BackupVM, in)
				var started *serviceerror.WorkflowExecutionAlreadyStarted
				if errors.As(err, &started) {
					// A start the busy server did take the first time.
					return c.GetWorkflow(gctx, workflows.BackupWorkflowID(in.VM), started.RunId), nil
				}
				return r, err
			})
			runs[i] = run
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("start %d backups: %v", n, err)
	}
	started := time.Since(start)

	points := make([]string, n)
	var failed []string
	var mu sync.Mutex
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error {
			var res workflows.BackupVMResult
			_, err := startBusy(gctx, func() (struct{}, error) { return struct{}{}, runs[i].Get(gctx, &res) })
			mu.Lock()
			defer mu.Unlock()
			if err != nil || res.RecoveryPoint == "" {
				failed = append(failed, fmt.Sprintf("vm%04d: %v", i, err))
				return nil
			}
			points[i] = res.RecoveryPoint
			return nil
		})
	}
	_ = g.Wait()
	elapsed := time.Since(start)
	peak := mem.finish()
	if len(failed) > 0 {
		sort.Strings(failed)
		t.Fatalf("%d of %d concurrent backups failed, e.g. %s", len(failed), n, failed[0])
	}

	// History length of a sample: each job's cost on the server.
	var events []int
	for _, i := range pickFaults(t, seq(n), 5) {
		it := c.GetWorkflowHistory(ctx, workflows.BackupWorkflowID(fmt.Sprintf("vm%04d", i)), runs[i].GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		k := 0
		for it.HasNext() {
			if _, err := it.Next(); err != nil {
				t.Fatal(err)
			}
			k++
		}
		events = append(events, k)
	}
	sort.Ints(events)

	// No blob twice, every point in the vault, a sample restores bit-exact.
	v := e.openVault()
	idx, err := v.Repo().Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := idx.Stats().Duplicates; d != 0 {
		t.Fatalf("%d blobs stored twice under %d concurrent backups", d, n)
	}
	rps, err := v.ListRecoveryPoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rps) != n {
		t.Fatalf("the vault holds %d recovery points after %d backups", len(rps), n)
	}
	restored := 0
	for _, i := range pickFaults(t, seq(n), 3) {
		e.restoreDisksMatchNoTemp(points[i], hashes[i])
		restored++
	}
	if peak > maxWorkerMiB {
		t.Fatalf("worker peak memory %d MiB under %d concurrent backups, want at most %d", peak, n, maxWorkerMiB)
	}
	reportLoad(t, "%d concurrent backups of 2-disk VMs on one worker: all %d completed in %s (%.1f backups/s; starts took %s), worker peak RSS %d MiB, history %d-%d events per backup, %d sampled points restored bit-exact",
		n, n, elapsed.Round(100*time.Millisecond), float64(n)/elapsed.Seconds(), started.Round(100*time.Millisecond), peak, events[0], events[len(events)-1], restored)
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// A burst of 1,000 scheduled starts (make load; 30 in make test): every
// protected VM's schedule fires at the same moment, as a night's calendar
// with every VM at one time does. Every run completes with a recovery
// point or skips as designed: a run that finds an on-demand backup of its
// VM running completes as skipped (vm0000 has one, held on a host with no
// worker). (A trigger while the schedule's own run goes is dropped by the
// server without a trace in the schedule's counters, so the skip overlap
// is not counted here.) Nothing fails, each VM ends with
// one recovery point per completed run, no blob is stored twice, and the
// worker's memory stays bounded.
func TestLoadScheduledBurst(t *testing.T) {
	n := loadSize(1000, 30)
	const triggers = 1
	e := newEnv(t, envOpts{})
	hashes := makeFleet(t, e.vmsRoot(), n)
	w := e.startWorker(nil)
	c := e.tp.Client(t)
	ctx := context.Background()
	e.mustCLI("policy", "create", "gold", "--time", "22:00")
	start := time.Now()
	protectFleet(t, c, n)
	t.Logf("protected %d vms in %s", n, time.Since(start).Round(100*time.Millisecond))

	// vm0000's on-demand backup waits for host "away", whose worker is not
	// there: its one backup id is taken for the whole burst.
	busyVM := "vm0000"
	held := workflows.BackupVMInput{VM: busyVM, Host: "away"}
	if _, err := c.ExecuteWorkflow(ctx, workflows.BackupStartOptions("vmvault", held, 0), workflows.BackupVM, held); err != nil {
		t.Fatal(err)
	}

	mem := watchMem(w.cmd.Process.Pid)
	start = time.Now()
	g := errgroup.Group{}
	g.SetLimit(32)
	for round := 0; round < triggers; round++ {
		for i := range n {
			g.Go(func() error {
				h := c.ScheduleClient().GetHandle(ctx, workflows.ProtectScheduleID(fmt.Sprintf("vm%04d", i)))
				_, err := startBusy(ctx, func() (struct{}, error) { return struct{}{}, h.Trigger(ctx, client.ScheduleTriggerOptions{}) })
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("trigger %d schedules: %v", n, err)
	}
	triggered := time.Since(start)

	// Wait until every trigger is accounted for (run or skipped) and no run
	// is going, then read each run's result.
	type tally struct{ completed, skippedRunning, skippedOverlap int }
	tallies := make([]tally, n)
	var mu sync.Mutex
	var bad []string
	deadline := time.Now().Add(time.Duration(n)*time.Second + 5*time.Minute)
	g2, gctx := errgroup.WithContext(ctx)
	g2.SetLimit(32)
	for i := range n {
		g2.Go(func() error {
			vm := fmt.Sprintf("vm%04d", i)
			h := c.ScheduleClient().GetHandle(gctx, workflows.ProtectScheduleID(vm))
			for {
				d, err := startBusy(gctx, func() (*client.ScheduleDescription, error) { return h.Describe(gctx) })
				if err != nil {
					return fmt.Errorf("describe schedule of %s: %w", vm, err)
				}
				if d.Info.NumActions+d.Info.NumActionsSkippedOverlap >= triggers && len(d.Info.RunningWorkflows) == 0 {
					tl := tally{skippedOverlap: d.Info.NumActionsSkippedOverlap}
					for _, a := range d.Info.RecentActions {
						var res workflows.ScheduledBackupResult
						_, err := startBusy(gctx, func() (struct{}, error) {
							return struct{}{}, c.GetWorkflow(gctx, a.StartWorkflowResult.WorkflowID, a.StartWorkflowResult.FirstExecutionRunID).Get(gctx, &res)
						})
						switch {
						case err == nil && res.Backup != nil && res.Backup.RecoveryPoint != "":
							tl.completed++
						case err == nil && res.Skipped && strings.Contains(res.Note, "already running"):
							tl.skippedRunning++
						default:
							mu.Lock()
							bad = append(bad, fmt.Sprintf("%s: run %s neither completed nor skipped as designed: %v %s", vm, a.StartWorkflowResult.WorkflowID, err, res.Note))
							mu.Unlock()
						}
					}
					tallies[i] = tl
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("schedule of %s: %d runs, %d skipped, %d running after the deadline", vm, d.Info.NumActions, d.Info.NumActionsSkippedOverlap, len(d.Info.RunningWorkflows))
				}
				time.Sleep(2 * time.Second)
			}
		})
	}
	if err := g2.Wait(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	peak := mem.finish()
	if len(bad) > 0 {
		sort.Strings(bad)
		t.Fatalf("%d runs went wrong, e.g. %s", len(bad), bad[0])
	}
	// The held backup fails by itself once its first step has waited long
	// enough for host "away"; end it if it has not yet.
	var notFound *serviceerror.NotFound
	if err := c.TerminateWorkflow(ctx, workflows.BackupWorkflowID(busyVM), "", "load test: the held backup is no longer needed"); err != nil && !errors.As(err, &notFound) {
		t.Fatal(err)
	}

	v := e.openVault()
	rps, err := v.ListRecoveryPoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	perVM := map[string]int{}
	for _, rp := range rps {
		perVM[rp.VM]++
	}
	var sum tally
	for i, tl := range tallies {
		vm := fmt.Sprintf("vm%04d", i)
		if perVM[vm] != tl.completed {
			t.Errorf("%s has %d recovery points for %d completed runs", vm, perVM[vm], tl.completed)
		}
		if tl.completed+tl.skippedRunning+tl.skippedOverlap != triggers {
			t.Errorf("%s: %d triggers, %d completed, %d skipped (backup running), %d skipped (overlap)", vm, triggers, tl.completed, tl.skippedRunning, tl.skippedOverlap)
		}
		if vm == busyVM && tl.completed != 0 {
			t.Errorf("%s: %d scheduled runs backed it up while its on-demand backup held its job id", vm, tl.completed)
		}
		if vm != busyVM && tl.completed == 0 {
			t.Errorf("%s: no scheduled run backed it up", vm)
		}
		sum.completed += tl.completed
		sum.skippedRunning += tl.skippedRunning
		sum.skippedOverlap += tl.skippedOverlap
	}
	idx, err := v.Repo().Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := idx.Stats().Duplicates; d != 0 {
		t.Errorf("%d blobs stored twice", d)
	}
	if t.Failed() {
		t.FailNow()
	}
	restored := 0
	for _, i := range pickFaults(t, seq(n)[1:], 3) {
		pts, err := v.ListRecoveryPoints(ctx, fmt.Sprintf("vm%04d", i))
		if err != nil || len(pts) == 0 {
			t.Fatalf("vm%04d: no point (%v)", i, err)
		}
		e.restoreDisksMatchNoTemp(pts[len(pts)-1].Ref(), hashes[i])
		restored++
	}
	if peak > maxWorkerMiB {
		t.Errorf("worker peak memory %d MiB under a burst of %d scheduled starts, want at most %d", peak, n, maxWorkerMiB)
	}
	reportLoad(t, "burst of %d scheduled starts (triggered in %s): %d backups completed, %d skipped as designed (a backup of the VM already running), 0 failed; all done in %s (%.1f backups/s), worker peak RSS %d MiB, %d sampled points restored bit-exact",
		triggers*n, triggered.Round(100*time.Millisecond), sum.completed, sum.skippedRunning+sum.skippedOverlap, elapsed.Round(100*time.Millisecond), float64(sum.completed)/elapsed.Seconds(), peak, restored)
}
