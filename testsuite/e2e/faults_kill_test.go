package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
	"github.com/vmvault/vmvault/testsuite/harness"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// killScenario is one fault point (faultpoint.Points) and the job that
// reaches it: the worker running the job kills itself there with SIGKILL.
type killScenario struct {
	point string // the VMVAULT_FAULTPOINT value: name or name@n
	group string // the outcome row
	run   func(k *killRun)
}

// killScenarios covers every fault point (TestFaultsKillCoversEveryPoint).
var killScenarios = []killScenario{
	{"snapshot.created", "backup", killBackup},
	{"backup.prepared", "backup", killBackup},
	{"transfer.pack@3", "backup", killBackup},
	{"transfer.packindex@3", "backup", killBackup},
	{"transfer.checkpoint@2", "backup", killBackup},
	{"transfer.done", "backup", killBackup},
	{"commit.manifest", "backup", killBackup},
	{"snapshot.delete", "backup", killBackup},
	{"snapshot.deleted", "backup", killBackup},
	{"restore.write@3", "restore", killRestore(restoreReplace)},
	{"restore.written", "restore", killRestore(restoreDisks)},
	{"restore.journal", "restore", killRestore(restoreNewVM)},
	{"restore.commit", "restore", killRestore(restoreDisks)},
	{"restore.commit@2", "restore", killRestore(restoreReplace)},
	{"restore.config", "restore", killRestore(restoreReplace)},
	{"restore.committed", "restore", killRestore(restoreNewVM)},
	{"gc.mark", "gc", killGC},
	{"gc.sweep", "gc", killGC},
	{"gc.swept", "gc", killGC},
	{"retention.expire", "retention", killRetention},
	{"retention.purge", "retention", killRetention},
	{"replicate.copy@5", "replication", killReplicate},
	{"replicate.done", "replication", killReplicate},
	{"repair.unindex", "repair", killRepair},
	{"repair.reindex@2", "repair", killRepair},
	{"check.read@3", "check", killCheck},
	{"heal.replace@2", "repair --secondary", killHeal},
}

func TestFaultsKillCoversEveryPoint(t *testing.T) {
	covered := map[string]bool{}
	for _, s := range killScenarios {
		name, _, _ := strings.Cut(s.point, "@")
		covered[name] = true
	}
	for _, p := range faultpoint.Points {
		if !covered[p.Name] {
			t.Errorf("fault point %s (%s) has no kill scenario", p.Name, p.Phase)
		}
	}
}

// killParallel is how many scenarios run at once: most of a scenario is
// waiting for Temporal to time out the dead worker's task.
const killParallel = 4

// TestFaultsKill kills the worker with SIGKILL at fault points of every
// phase, one scenario each: the worker that runs the job dies at the
// point, a clean worker takes over, and then the job has completed or
// failed with a one-line reason, every recovery point restores bit for
// bit, no durable blob is stored twice, and no staging file, journal or
// unfinished VM folder is left (an images snapshot is a fingerprint held
// in the job, so nothing of it can stay on the host, and a stopped images
// VM has no guest to freeze: neither can leak here). The short form runs 4
// seeded points, VMVAULT_FAULTS=full all of them. The scenarios share one
// Temporal server, a namespace each.
func TestFaultsKill(t *testing.T) {
	picked := pickFaults(t, killScenarios, 4)
	if only := os.Getenv("VMVAULT_FAULTS_ONLY"); only != "" {
		// A comma list of points to run alone (debugging a scenario).
		picked = nil
		for _, s := range killScenarios {
			if strings.Contains(","+only+",", ","+s.point+",") {
				picked = append(picked, s)
			}
		}
	}
	var names []string
	for i := range picked {
		names = append(names, fmt.Sprintf("kill%d", i))
	}
	tp := harness.StartTemporal(t, names...)
	start := time.Now()
	var mu sync.Mutex
	groups := map[string]*faultOutcome{}
	sem := make(chan struct{}, killParallel)
	var wg sync.WaitGroup
	for i, s := range picked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(s.point, func(t *testing.T) {
				k := newKillRun(t, tp.In(names[i]), s.point)
				began := time.Now()
				s.run(k)
				k.checkLeaks()
				t.Logf("%s: %s", s.point, time.Since(began).Round(time.Second))
				mu.Lock()
				defer mu.Unlock()
				g := groups[s.group]
				if g == nil {
					g = &faultOutcome{Scenario: "kill -9 worker: " + s.group}
					groups[s.group] = g
				}
				g.add(k.o)
			})
		}()
	}
	wg.Wait()
	var rows []string
	for g := range groups {
		rows = append(rows, g)
	}
	sort.Strings(rows)
	for _, g := range rows {
		recordFaults(t, *groups[g])
	}
	t.Logf("%d kill scenarios in %s", len(picked), time.Since(start).Round(time.Second))
}

func (o *faultOutcome) add(p faultOutcome) {
	o.Faults += p.Faults
	o.Completed += p.Completed
	o.FailedCleanly += p.FailedCleanly
	o.Restores += p.Restores
	o.BytesLost += p.BytesLost
	o.WrongRestores += p.WrongRestores
	o.Leaks += p.Leaks
}

// killRun is one scenario: its env, the points it made and what it counted.
type killRun struct {
	t     *testing.T
	e     *env
	point string
	// want are the disk hashes of every recovery point that should be
	// listed and restore.
	want map[string]map[string]string
	vms  []string
	// dirs are disks-only restore targets, checked for leftovers.
	dirs []string
	// before are the blob copies in the vault before the faulted job.
	before map[format.ID][]format.ID
	o      faultOutcome
}

func newKillRun(t *testing.T, tp *harness.Temporal, point string) *killRun {
	// Small packs and 16-block leaves: many packs, checkpoints and leaves
	// in small VMs, so every @n point is reached.
	e := newEnv(t, envOpts{temporal: tp, initArgs: []string{"--pack-size", "2097152", "--leaf-blocks", "16"}})
	return &killRun{t: t, e: e, point: point, want: map[string]map[string]string{}}
}

// vm creates a small VM whose every recovery point this scenario checks.
func (k *killRun) vm(name string, seed uint64) string {
	if _, err := vmfixture.Create(k.e.vmsRoot(), smallSpec(name, seed)); err != nil {
		k.t.Fatal(err)
	}
	k.vms = append(k.vms, name)
	return filepath.Join(k.e.vmsRoot(), name)
}

// backup backs vm up (a clean worker must run) and records its hashes.
func (k *killRun) backup(vm string) string {
	h := diskHashes(k.t, filepath.Join(k.e.vmsRoot(), vm))
	rp := k.e.backup(vm).RecoveryPoint
	k.want[rp] = h
	return rp
}

func (k *killRun) mutate(vm string, seed uint64) {
	if err := vmfixture.Mutate(k.e.vmsRoot(), vm, 8, 24, seed); err != nil {
		k.t.Fatal(err)
	}
}

// faulty starts a worker armed with the scenario's fault point.
func (k *killRun) faulty(extra ...string) *worker {
	return k.e.startWorker(append([]string{faultpoint.Env + "=" + k.point}, extra...))
}

// stop ends a worker gracefully.
func (w *worker) stop(t *testing.T) {
	t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop after SIGTERM")
	}
}

// cliAsync runs the CLI in the background; the result comes on the channel.
func (e *env) cliAsync(args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := e.runCLI(8*time.Minute, nil, args...)
		if err != nil {
			r.code, r.stderr = -1, err.Error()
		}
		ch <- r
	}()
	return ch
}

// through runs a job (a CLI command that waits for it) on a worker armed
// with the scenario's fault point: that worker must die by SIGKILL at the
// point; then a clean worker (with extra settings) finishes the job. It
// returns the job's result and counts it, completed or failed cleanly.
func (k *killRun) through(extra []string, args ...string) result {
	k.t.Helper()
	k.before, _ = copies(k.t, k.e)
	w := k.faulty(extra...)
	job := k.e.cliAsync(args...)
	select {
	case <-w.done:
	case r := <-job:
		k.t.Fatalf("vmvault %s ended (exit %d) before fault point %s was reached:\n%s%s", strings.Join(args, " "), r.code, k.point, r.stdout, r.stderr)
	case <-time.After(3 * time.Minute):
		k.t.Fatalf("fault point %s not reached in 3 minutes by vmvault %s", k.point, strings.Join(args, " "))
	}
	ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		b, _ := os.ReadFile(w.log)
		k.t.Fatalf("worker ended %v, want killed by SIGKILL at %s; log:\n%s", w.cmd.ProcessState, k.point, tail(string(b), 3000))
	}
	b, _ := os.ReadFile(w.log)
	name, _, _ := strings.Cut(k.point, "@")
	if !strings.Contains(string(b), "faultpoint "+name+"@") {
		k.t.Fatalf("worker died by SIGKILL but not at fault point %s; log:\n%s", k.point, tail(string(b), 3000))
	}
	k.o.Faults++
	killed := time.Now()
	k.e.startWorker(extra)
	var r result
	select {
	case r = <-job:
	case <-time.After(6 * time.Minute):
		k.t.Fatalf("vmvault %s did not end within 6 minutes of the kill at %s", strings.Join(args, " "), k.point)
	}
	k.t.Logf("%s: the job ended %s after the kill (exit %d)", k.point, time.Since(killed).Round(time.Second), r.code)
	if r.code == 0 {
		k.o.Completed++
		return r
	}
	lines := nonProgressLines(r.stderr)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "vmvault: ") {
		k.t.Errorf("vmvault %s failed after the kill at %s without a one-line reason:\n%s", strings.Join(args, " "), k.point, r.stderr)
		return r
	}
	k.o.FailedCleanly++
	k.t.Logf("%s: the job failed cleanly: %s", k.point, lines[0])
	return r
}

// verifyPoints restores every listed recovery point of the scenario's VMs
// and compares it with its source; a listed point the scenario did not
// make, or a made one that is not listed, is an error.
func (k *killRun) verifyPoints(from ...string) {
	k.t.Helper()
	listed := map[string]bool{}
	for _, vm := range k.vms {
		for _, row := range k.e.rpList(vm) {
			listed[row.ID] = true
			want, ok := k.want[row.ID]
			if !ok {
				k.t.Errorf("recovery point %s is listed but no backup reported it", row.ID)
				continue
			}
			k.verifyPoint(row.ID, want, from...)
		}
	}
	for rp := range k.want {
		if !listed[rp] {
			k.t.Errorf("recovery point %s was reported saved but is not listed", rp)
		}
	}
}

// verifyPoint restores rp as disk images and compares them with want,
// counting the restore, a wrong one and the bytes that did not come back.
func (k *killRun) verifyPoint(rp string, want map[string]string, args ...string) {
	k.t.Helper()
	dir := filepath.Join(k.t.TempDir(), "verify")
	r := k.e.cli(append([]string{"restore", rp, "--disks", dir, "--wait"}, args...)...)
	if r.code != 0 {
		k.o.BytesLost += pointBytes(k.t, k.e.vmsRoot(), rp)
		k.t.Errorf("restore of %s %v: exit %d: %s", rp, args, r.code, r.stderr)
		return
	}
	k.compare(rp, dir, want)
}

// compare checks the disk images in dir against want.
func (k *killRun) compare(what, dir string, want map[string]string) {
	k.t.Helper()
	k.o.Restores++
	wrong := false
	for d, h := range want {
		p := filepath.Join(dir, d+".raw")
		got, err := vmfixture.SHA256(p)
		if err != nil || got != h {
			wrong = true
			fi, _ := os.Stat(p)
			if fi != nil {
				k.o.BytesLost += fi.Size()
			}
			k.t.Errorf("%s: disk %s restored with sha256 %s (%v), source had %s", what, d, got, err, h)
		}
	}
	if wrong {
		k.o.WrongRestores++
	}
}

// pointBytes is the size of a point's VM disks (the VM folder's images):
// what a point that cannot be restored lost.
func pointBytes(t *testing.T, root, rp string) int64 {
	vm, _, _ := strings.Cut(rp, "/")
	var n int64
	for _, d := range []string{"os", "data0"} {
		if fi, err := os.Stat(filepath.Join(root, vm, d+".raw")); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// checkLeaks counts what the kill left behind: blobs stored again by the
// faulted job (a durable pack uploaded again), and hidden files (restore staging
// files, commit journals, new-VM markers) or folders without vm.json in
// the images root and in disks-only restore targets. Packs stored but not
// indexed (uploads in flight at the kill, at most 4) are garbage for GC,
// not leaks; more than that is an error.
func (k *killRun) checkLeaks() {
	if k.t.Failed() {
		return
	}
	ctx := context.Background()
	idx, err := k.e.openVault().Repo().Index(ctx)
	if err != nil {
		k.t.Fatal(err)
	}
	st := idx.Stats()
	k.storedAgain()
	if orphans := len(k.e.objects("packs/")) - st.Packs; orphans > 4 {
		k.t.Errorf("%s: %d packs stored but not indexed, want at most the 4 in flight at the kill", k.point, orphans)
	}
	entries, err := os.ReadDir(k.e.vmsRoot())
	if err != nil {
		k.t.Fatal(err)
	}
	for _, vm := range entries {
		dir := filepath.Join(k.e.vmsRoot(), vm.Name())
		if _, err := os.Stat(filepath.Join(dir, "vm.json")); err != nil {
			k.o.Leaks++
			k.t.Errorf("%s: %s is left without vm.json", k.point, dir)
		}
		k.hidden(dir)
	}
	for _, d := range k.dirs {
		k.hidden(d)
	}
}

// storedAgain counts the blobs of which the faulted job stored another
// copy, beside one that was durable. Two disks of one backup that hold the
// same block or leaf (an all-zero leaf, say) may both store it, since
// their transfers run in parallel, each deduplicating against what is
// indexed: that is logged, not counted as a leak of the kill.
func (k *killRun) storedAgain() {
	after, types := copies(k.t, k.e)
	var points []string
	for rp := range k.want {
		points = append(points, rp)
	}
	var shared map[format.ID]map[string]bool
	for id, packs := range after {
		if len(packs) <= max(1, len(k.before[id])) {
			continue
		}
		if shared == nil {
			shared = sharedByDisks(k.t, k.e, points)
		}
		kind := map[format.BlobType]string{format.BlobData: "data", format.BlobTree: "tree"}[types[id]]
		if len(shared[id]) > 1 {
			k.t.Logf("%s: %s blob %s is in %d packs: disks %v of one backup each stored it (parallel transfers)", k.point, kind, id.Short(), len(packs), sortedKeys(shared[id]))
			continue
		}
		k.o.Leaks++
		k.t.Errorf("%s: %s blob %s was stored again: it is in %d packs, %d before the job", k.point, kind, id.Short(), len(packs), len(k.before[id]))
	}
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (k *killRun) hidden(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, f := range entries {
		if strings.HasPrefix(f.Name(), ".") {
			k.o.Leaks++
			k.t.Errorf("%s: %s is left behind", k.point, filepath.Join(dir, f.Name()))
		}
	}
}

// killBackup: a backup (an incremental over a clean full) killed at the point.
func killBackup(k *killRun) {
	k.vm("app", 1)
	w := k.e.startWorker(nil)
	k.backup("app")
	w.stop(k.t)
	k.mutate("app", 2)
	h := diskHashes(k.t, filepath.Join(k.e.vmsRoot(), "app"))
	r := k.through(nil, "backup", "app", "--wait", "--json")
	if r.code == 0 {
		var res workflows.BackupVMResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			k.t.Fatalf("backup output %q: %v", r.stdout, err)
		}
		k.want[res.RecoveryPoint] = h
		k.t.Logf("%s: %s %s, notes %q", k.point, res.Type, res.RecoveryPoint, res.Notes)
	}
	k.verifyPoints()
}

type restoreMode int

const (
	restoreDisks restoreMode = iota
	restoreNewVM
	restoreReplace
)

// killRestore: a restore of a clean backup killed at the point; the
// target then holds the point's disks, and nothing staged is left.
func killRestore(mode restoreMode) func(k *killRun) {
	return func(k *killRun) {
		dir := k.vm("app", 3)
		w := k.e.startWorker(nil)
		rp := k.backup("app")
		w.stop(k.t)
		args := []string{"restore", rp, "--wait"}
		var target string
		switch mode {
		case restoreDisks:
			target = filepath.Join(k.e.dataDir, "restored")
			k.dirs = append(k.dirs, target)
			args = append(args, "--disks", target)
		case restoreNewVM:
			target = filepath.Join(k.e.vmsRoot(), "copy")
			args = append(args, "--new-vm", "copy")
		case restoreReplace:
			k.mutate("app", 4) // the replaced disks differ from the point's
			target = dir
			args = append(args, "--replace")
		}
		var before map[string]string
		if mode == restoreReplace {
			before = diskHashes(k.t, target)
		}
		if r := k.through(nil, args...); r.code == 0 {
			k.compare("restore target "+target, target, k.want[rp])
		} else {
			k.unchanged(target, before)
		}
		k.verifyPoints()
	}
}

// unchanged checks that a failed restore left its target as it was: the
// disks it replaces with the hashes before, or, a new VM or disks-only
// target, no disk image at all. Anything else is a partial restore left
// behind, counted as a leak.
func (k *killRun) unchanged(target string, before map[string]string) {
	k.t.Helper()
	if before != nil {
		if got := diskHashes(k.t, target); fmt.Sprint(got) != fmt.Sprint(before) {
			k.o.Leaks++
			k.t.Errorf("%s: the failed restore changed the disks of %s: %v, before %v", k.point, target, got, before)
		}
		return
	}
	imgs, _ := filepath.Glob(filepath.Join(target, "*.raw"))
	if len(imgs) > 0 {
		k.o.Leaks += len(imgs)
		k.t.Errorf("%s: the failed restore left %v", k.point, imgs)
	}
}

// killGC: a garbage collection with garbage to free (a purged point's
// packs) killed at the point; the kept points restore, check is clean.
func killGC(k *killRun) {
	k.vm("keep", 5)
	if _, err := vmfixture.Create(k.e.vmsRoot(), smallSpec("gone", 6)); err != nil {
		k.t.Fatal(err)
	}
	w := k.e.startWorker(nil)
	k.backup("keep")
	gone := k.e.backup("gone").RecoveryPoint
	w.stop(k.t)
	ctx := context.Background()
	v := k.e.openVault()
	now := time.Now()
	if _, err := v.DeleteRecoveryPoint(ctx, gone, now, time.Hour); err != nil {
		k.t.Fatal(err)
	}
	if purged, err := v.Maint().PurgeDeleted(ctx, now.Add(2*time.Hour), time.Hour); err != nil || len(purged) != 1 {
		k.t.Fatalf("purge: %v %v", purged, err)
	}
	packs := len(k.e.objects("packs/"))
	k.through(nil, "vault", "gc", "--grace", "1s", "--repack-below", "0", "--wait", "--json")
	if left := len(k.e.objects("packs/")); left >= packs {
		k.t.Errorf("%s: gc freed nothing: %d packs before, %d after", k.point, packs, left)
	}
	k.e.mustCLI("vault", "check")
	k.verifyPoints()
}

// killRetention: retention (keep 1 daily of 3 points) killed while it
// soft-deletes, or while it purges what an earlier run soft-deleted.
func killRetention(k *killRun) {
	k.vm("ret", 7)
	w := k.e.startWorker(nil)
	var rps []string
	for i := range 3 {
		if i > 0 {
			k.mutate("ret", uint64(10+i))
		}
		rps = append(rps, k.backup("ret"))
	}
	rules := []string{"retention", "run", "--vm", "ret", "--daily", "1"}
	purge := strings.HasPrefix(k.point, "retention.purge")
	if purge {
		k.e.mustCLI(rules...)
	}
	w.stop(k.t)
	if purge {
		rules = append(rules, "--keep-deleted-for", "1ms")
	}
	k.through(nil, rules...)
	// The newest point stays; the two older are soft-deleted, or purged.
	expired := map[string]map[string]string{}
	for _, rp := range rps[:2] {
		expired[rp] = k.want[rp]
		delete(k.want, rp)
	}
	k.verifyPoints()
	deleted := rowIDs(k.e.rpList("--deleted"))
	if purge {
		if len(deleted) != 0 {
			k.t.Errorf("%s: still soft-deleted after the purge: %v", k.point, deleted)
		}
		return
	}
	if strings.Join(deleted, " ") != rps[0]+" "+rps[1] {
		k.t.Errorf("%s: soft-deleted %v, want %v", k.point, deleted, rps[:2])
	}
	// A soft-deleted point's data is intact: undeleted, it restores.
	k.e.mustCLI("rp", "undelete", rps[0])
	k.verifyPoint(rps[0], expired[rps[0]])
}

// killReplicate: the first replication to a new secondary killed at the
// point; then every point restores from the primary and from the
// secondary, and check compares the two.
func killReplicate(k *killRun) {
	k.vm("app", 8)
	w := k.e.startWorker(nil)
	k.backup("app")
	k.mutate("app", 9)
	k.backup("app")
	w.stop(k.t)
	k.e.vars = append(k.e.vars, "VMVAULT_SECONDARY_VAULT=file://"+filepath.Join(k.e.dataDir, "secondary"))
	k.through(nil, "vault", "replicate", "--wait")
	k.verifyPoints()
	k.verifyPoints("--from-secondary")
	k.e.mustCLI("vault", "check", "--secondary")
}

// killRepair: a repair with work to do (three packs without index objects,
// one lost pack of a purged point) killed at the point; afterwards every
// pack is indexed again, the lost pack's index object is gone, and every
// point restores.
func killRepair(k *killRun) {
	k.vm("app", 10)
	if _, err := vmfixture.Create(k.e.vmsRoot(), smallSpec("junk", 11)); err != nil {
		k.t.Fatal(err)
	}
	w := k.e.startWorker(nil)
	k.backup("app")
	ours := k.e.objects("packs/")
	junk := k.e.backup("junk").RecoveryPoint
	w.stop(k.t)
	ctx := context.Background()
	v := k.e.openVault()
	now := time.Now()
	if _, err := v.DeleteRecoveryPoint(ctx, junk, now, time.Hour); err != nil {
		k.t.Fatal(err)
	}
	if _, err := v.Maint().PurgeDeleted(ctx, now.Add(2*time.Hour), time.Hour); err != nil {
		k.t.Fatal(err)
	}
	var lost string
	for key := range k.e.objects("packs/") {
		if _, ok := ours[key]; !ok {
			lost = key
			break
		}
	}
	var unindexed []format.ID
	for key := range k.e.objects(format.KindIndex.Prefix()) {
		id, _, ok := format.ParseIndexKey(key)
		if !ok || len(unindexed) == 3 {
			continue
		}
		if _, mine := ours[format.PackKey(id)]; mine {
			unindexed = append(unindexed, id)
			if err := k.e.be.Delete(ctx, key); err != nil {
				k.t.Fatal(err)
			}
		}
	}
	if lost == "" || len(unindexed) != 3 {
		k.t.Fatalf("setup: lost pack %q, %d packs unindexed", lost, len(unindexed))
	}
	if err := k.e.be.Delete(ctx, lost); err != nil {
		k.t.Fatal(err)
	}
	k.through(nil, "vault", "repair")
	indexed := map[format.ID]bool{}
	for key := range k.e.objects(format.KindIndex.Prefix()) {
		if id, _, ok := format.ParseIndexKey(key); ok {
			indexed[id] = true
		}
	}
	for _, id := range unindexed {
		if !indexed[id] {
			k.t.Errorf("%s: pack %s has no index object after the repair", k.point, id.Short())
		}
	}
	for id := range indexed {
		if format.PackKey(id) == lost {
			k.t.Errorf("%s: the lost pack %s is still indexed", k.point, lost)
		}
	}
	k.e.mustCLI("vault", "check")
	k.verifyPoints()
}

// killCheck: check --read-data killed while it reads packs; run again it
// finds the vault sound.
func killCheck(k *killRun) {
	k.vm("app", 12)
	w := k.e.startWorker(nil)
	k.backup("app")
	w.stop(k.t)
	if r := k.through(nil, "vault", "check", "--read-data"); r.code == 0 && !strings.Contains(r.stdout, "every recovery point can be restored") {
		k.t.Errorf("%s: check said:\n%s", k.point, r.stdout)
	}
	k.verifyPoints()
}

// killHeal: vault repair --secondary killed right after it replaced the
// second of three damaged copies on the secondary (an index object, a
// pack, a manifest, each with a byte flipped); the retried attempt heals
// the rest, and every point restores from the secondary bit for bit.
func killHeal(k *killRun) {
	k.vm("app", 14)
	dir := filepath.Join(k.e.dataDir, "secondary")
	k.e.vars = append(k.e.vars, "VMVAULT_SECONDARY_VAULT=file://"+dir)
	w := k.e.startWorker(nil)
	k.backup("app")
	k.e.mustCLI("vault", "replicate", "--wait")
	w.stop(k.t)
	sec, err := fs.New(dir)
	if err != nil {
		k.t.Fatal(err)
	}
	ctx := context.Background()
	var damaged []string
	for _, p := range []string{format.KindIndex.Prefix(), format.KindPack.Prefix(), format.KindRecoveryPoint.Prefix()} {
		var key string
		if err := sec.List(ctx, p, func(k string, _ int64) error {
			if key == "" && !strings.HasPrefix(filepath.Base(k), ".") {
				key = k
			}
			return nil
		}); err != nil || key == "" {
			k.t.Fatalf("setup: no object under %s on the secondary (%v)", p, err)
		}
		data, err := sec.Get(ctx, key)
		if err != nil {
			k.t.Fatal(err)
		}
		data[len(data)/2] ^= 0x20
		if err := sec.Put(ctx, key, data); err != nil {
			k.t.Fatal(err)
		}
		damaged = append(damaged, key)
	}
	r := k.through(nil, "vault", "repair", "--secondary")
	k.t.Logf("%s: vault repair --secondary:\n%s", k.point, r.stdout)
	for _, key := range damaged {
		got, err := sec.Get(ctx, key)
		want, werr := k.e.be.Get(ctx, key)
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			k.t.Errorf("%s: the secondary's %s is not healed after the kill (%v, %v)", k.point, key, err, werr)
		}
	}
	k.e.mustCLI("vault", "check", "--secondary", "--read-data")
	k.verifyPoints("--from-secondary")
	k.verifyPoints()
}

// copies maps every blob the vault's index objects list to the packs
// listing it, and tells tree blobs from data.
func copies(t *testing.T, e *env) (map[format.ID][]format.ID, map[format.ID]format.BlobType) {
	ctx := context.Background()
	keys := e.openVault().Repo().Keys()
	where := map[format.ID][]format.ID{}
	types := map[format.ID]format.BlobType{}
	for key := range e.objects(format.KindIndex.Prefix()) {
		pi, err := index.GetPackIndex(ctx, e.be, keys, key)
		if err != nil {
			t.Errorf("read %s: %v", key, err)
			continue
		}
		for _, en := range pi.Entries {
			where[en.ID] = append(where[en.ID], pi.Pack)
			types[en.ID] = en.Type
		}
	}
	return where, types
}

// sharedByDisks maps every blob of the points' trees (root, leaves,
// blocks) to the disks that reference it.
func sharedByDisks(t *testing.T, e *env, points []string) map[format.ID]map[string]bool {
	ctx := context.Background()
	v := e.openVault()
	out := map[format.ID]map[string]bool{}
	note := func(id format.ID, disk string) {
		if out[id] == nil {
			out[id] = map[string]bool{}
		}
		out[id][disk] = true
	}
	for _, ref := range points {
		p, err := v.LoadRecoveryPoint(ctx, ref)
		if err != nil {
			continue // deleted by the job
		}
		for _, d := range p.Disks {
			note(d.Root, d.Name)
			root, err := v.Repo().LoadRoot(ctx, d.Root)
			if err != nil {
				t.Errorf("%s disk %s: %v", ref, d.Name, err)
				continue
			}
			for _, l := range root.Leaves {
				note(l, d.Name)
			}
			ids, err := v.Repo().BlockIDs(ctx, d.Root)
			if err != nil {
				t.Errorf("%s disk %s: %v", ref, d.Name, err)
				continue
			}
			for _, id := range ids {
				note(id, d.Name)
			}
		}
	}
	return out
}
