package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/imagelock"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

const mib = vmfixture.MiB

func smallSpec(name string, seed uint64) vmfixture.Spec {
	return vmfixture.Spec{Name: name, OSSize: 64 * mib, DataDisks: []int64{96 * mib}, TempSize: 8 * mib, Seed: seed}
}

// diskHashes returns the sha256 of every backed-up disk of a VM.
func diskHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range []string{"os", "data0"} {
		h, err := vmfixture.SHA256(filepath.Join(dir, d+".raw"))
		if err != nil {
			t.Fatal(err)
		}
		out[d] = h
	}
	return out
}

// restoreDisksMatch restores rp as disk images and compares them with want.
func (e *env) restoreDisksMatch(rp string, want map[string]string) {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "restore")
	e.mustCLI("restore", rp, "--disks", dir, "--wait")
	got := diskHashes(e.t, dir)
	for d, h := range want {
		if got[d] != h {
			e.t.Fatalf("recovery point %s: disk %s restored with sha256 %s, source had %s", rp, d, got[d], h)
		}
	}
	temp, err := os.ReadFile(filepath.Join(dir, "temp.raw"))
	if err != nil {
		e.t.Fatal(err)
	}
	if strings.Trim(string(temp), "\x00") != "" {
		e.t.Fatalf("recovery point %s: temp disk restored with data, want empty", rp)
	}
}

func testChain(t *testing.T, s3 bool) {
	e := newEnv(t, envOpts{s3: s3})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("app1", 1)); err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(e.vmsRoot(), "app1")
	type point struct {
		rp   string
		hash map[string]string
	}
	var points []point
	for i := 0; i < 3; i++ {
		if i > 0 {
			if err := vmfixture.Mutate(e.vmsRoot(), "app1", int64(10*i), 4, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		res := e.backup("app1")
		wantType := "full"
		if i > 0 {
			wantType = "incremental"
			// Only about the changed 4 MiB (+ one OS block) may move.
			if res.Totals.NewBytes < 4*mib || res.Totals.NewBytes > 6*mib {
				t.Fatalf("backup %d uploaded %d bytes, want about 5 MiB", i, res.Totals.NewBytes)
			}
		}
		if string(res.Type) != wantType || res.Consistency != "crash-consistent" {
			t.Fatalf("backup %d: type %s consistency %s", i, res.Type, res.Consistency)
		}
		points = append(points, point{res.RecoveryPoint, diskHashes(t, vmDir)})
	}
	// Every recovery point is a synthetic full and restores bit-exact.
	for _, p := range points {
		e.restoreDisksMatch(p.rp, p.hash)
	}
	// rp list shows all three, oldest first.
	var rows []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("rp", "list", "app1", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].ID != points[0].rp || rows[2].ID != points[2].rp || rows[1].Type != "incremental" {
		t.Fatalf("rp list: %+v", rows)
	}
}

func TestChainFS(t *testing.T) { testChain(t, false) }
func TestChainS3(t *testing.T) { testChain(t, true) }

func TestRestoreNewVMAndReplace(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("db1", 2)); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(e.vmsRoot(), "db1")
	want := diskHashes(t, src)
	rp := e.backup("db1").RecoveryPoint
	e.mustCLI("restore", rp, "--new-vm", "db1-copy", "--wait")
	if got := diskHashes(t, filepath.Join(e.vmsRoot(), "db1-copy")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("new vm disks %v, want %v", got, want)
	}
	// A second restore to the same name is refused, leaving it alone.
	e.failCLI("already exists", "restore", rp, "--new-vm", "db1-copy", "--wait")

	// Replace: scribble over the source, restore over it, get the original back.
	if err := vmfixture.Mutate(e.vmsRoot(), "db1", 0, 16, 9); err != nil {
		t.Fatal(err)
	}
	e.mustCLI("restore", rp, "--replace", "--wait")
	if got := diskHashes(t, src); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replaced disks %v, want %v", got, want)
	}
	// vm list sees both VMs, and a broken vm.json elsewhere is a warning, not an outage.
	if err := os.MkdirAll(filepath.Join(e.vmsRoot(), "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.vmsRoot(), "broken", "vm.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.cli("vm", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "db1 ") || !strings.Contains(r.stdout, "db1-copy") ||
		!strings.Contains(r.stderr, "warning:") || !strings.Contains(r.stderr, "broken") {
		t.Fatalf("vm list: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The jobs are in Temporal visibility with their search attributes.
	jobs := e.mustCLI("job", "list", "--vm", "db1")
	if strings.Count(jobs, "completed") < 3 || !strings.Contains(jobs, "backup-db1") || !strings.Contains(jobs, rp) {
		t.Fatalf("job list:\n%s", jobs)
	}
	show := e.mustCLI("job", "show", "backup-db1")
	if !strings.Contains(show, "status          completed") || !strings.Contains(show, "data0") {
		t.Fatalf("job show:\n%s", show)
	}
}

// A worker killed (SIGKILL) mid-transfer: the job completes on a new worker,
// restores bit-exact, and nothing durable was uploaded twice.
func TestWorkerKilledDuringTransfer(t *testing.T) {
	// Small packs and 64-block leaves: checkpoints every 64 MiB.
	e := newEnv(t, envOpts{initArgs: []string{"--pack-size", "2097152", "--leaf-blocks", "64"}})
	// Reads capped at 64 MiB/s: the 1 GiB disk takes ~16 s, time to kill it.
	w := e.startWorker([]string{"VMVAULT_READ_LIMIT_MIB=64"})
	spec := vmfixture.Spec{Name: "big1", OSSize: 32 * mib, DataDisks: []int64{1024 * mib}, Seed: 3}
	if _, err := vmfixture.Create(e.vmsRoot(), spec); err != nil {
		t.Fatal(err)
	}
	// Fill the data disk with random data so every block is new.
	if err := vmfixture.Mutate(e.vmsRoot(), "big1", 0, 1024, 5); err != nil {
		t.Fatal(err)
	}
	want := diskHashes(t, filepath.Join(e.vmsRoot(), "big1"))
	// A short heartbeat timeout: the SDK sends heartbeats at most every 80% of it.
	if r := e.cliEnv([]string{"VMVAULT_HEARTBEAT_TIMEOUT=3s"}, "backup", "big1"); r.code != 0 {
		t.Fatalf("backup big1: %s", r.stderr)
	}

	// Wait until the server holds a checkpoint in the transfer's heartbeat.
	c := e.tp.Client(t)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint heartbeat seen")
		}
		d, err := c.DescribeWorkflowExecution(context.Background(), "backup-big1", "")
		if err != nil {
			t.Fatal(err)
		}
		if d.WorkflowExecutionInfo.CloseTime != nil {
			t.Fatal("backup finished before the worker could be killed: make the disk bigger")
		}
		found := false
		for _, pa := range d.PendingActivities {
			if pa.ActivityType.GetName() != "TransferDisk" || pa.HeartbeatDetails == nil {
				continue
			}
			var hb struct {
				Checkpoint *vault.Checkpoint `json:"checkpoint"`
			}
			if err := json.Unmarshal(pa.HeartbeatDetails.Payloads[0].Data, &hb); err == nil && hb.Checkpoint != nil && hb.Checkpoint.NextBlock >= 128 {
				found = true
			}
		}
		if found {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.kill()
	before := len(e.objects("packs/"))
	t.Logf("worker killed with %d packs stored", before)
	e.startWorker(nil)

	var res struct {
		RecoveryPoint string   `json:"recovery_point"`
		Notes         []string `json:"notes"`
	}
	deadline = time.Now().Add(5 * time.Minute)
	for {
		d, err := c.DescribeWorkflowExecution(context.Background(), "backup-big1", "")
		if err != nil {
			t.Fatal(err)
		}
		if d.WorkflowExecutionInfo.CloseTime != nil {
			if err := c.GetWorkflow(context.Background(), "backup-big1", "").Get(context.Background(), &res); err != nil {
				t.Fatalf("backup after worker crash: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("backup did not finish after the worker restarted")
		}
		time.Sleep(300 * time.Millisecond)
	}
	resumed := false
	for _, n := range res.Notes {
		resumed = resumed || strings.Contains(n, "disk data0: attempt 2 resumed at offset")
	}
	if !resumed {
		t.Fatalf("transfer did not resume from its checkpoint: notes %q", res.Notes)
	}
	// No blob is stored twice: packs that were durable before the crash were
	// not uploaded again. Only a pack in flight at the kill may be orphaned.
	v := e.openVault()
	idx, err := v.Repo().Index(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := idx.Stats()
	if st.Duplicates != 0 {
		t.Fatalf("%d blobs were uploaded twice", st.Duplicates)
	}
	packs := len(e.objects("packs/"))
	if orphans := packs - st.Packs; orphans < 0 || orphans > 2 {
		t.Fatalf("%d packs stored, %d indexed: %d orphans, want at most the 2 in flight", packs, st.Packs, orphans)
	}
	if st.PackBytes > 1100*mib {
		t.Fatalf("indexed packs hold %d bytes for ~1056 MiB of incompressible data", st.PackBytes)
	}
	t.Logf("packs before kill %d, after %d (indexed %d), no duplicates", before, packs, st.Packs)
	e.restoreDisksMatchNoTemp(res.RecoveryPoint, want)
}

func (e *env) restoreDisksMatchNoTemp(rp string, want map[string]string) {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "restore")
	e.mustCLI("restore", rp, "--disks", dir, "--wait")
	if got := diskHashes(e.t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("recovery point %s restored %v, want %v", rp, got, want)
	}
}

// A flipped byte in a pack fails the restore naming disk and offset; other
// recovery points still restore.
func TestCorruptPack(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("web2", 4)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), "web2")
	h1 := diskHashes(t, dir)
	r1 := e.backup("web2")
	if err := vmfixture.Mutate(e.vmsRoot(), "web2", 20, 2, 4); err != nil {
		t.Fatal(err)
	}
	r2 := e.backup("web2")

	// Find a data0 block only the second recovery point has, and corrupt it.
	ctx := context.Background()
	v := e.openVault()
	ids := func(rp string) []vault.ID {
		p, err := v.LoadRecoveryPoint(ctx, rp)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Disks {
			if d.Name == "data0" {
				b, err := v.Repo().BlockIDs(ctx, d.Root)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}
		t.Fatal("no data0")
		return nil
	}
	old, cur := ids(r1.RecoveryPoint), ids(r2.RecoveryPoint)
	block := -1
	for i := range cur {
		if cur[i] != old[i] && !cur[i].IsZero() {
			block = i
			break
		}
	}
	if block < 0 {
		t.Fatal("no changed block")
	}
	idx, _ := v.Repo().Index(ctx)
	loc, ok := idx.Lookup(cur[block])
	if !ok {
		t.Fatal("changed block not indexed")
	}
	var packPath string
	for k := range e.objects("packs/") {
		if strings.HasSuffix(k, loc.Pack.String()) {
			packPath = filepath.Join(e.dataDir, "vault", k)
		}
	}
	f, err := os.OpenFile(packPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := int64(loc.Offset) + int64(loc.Length)/2
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	wantOff := fmt.Sprintf("disk data0 offset %d", int64(block)*int64(v.Config().BlockSize))
	line := e.failCLI(wantOff, "restore", r2.RecoveryPoint, "--disks", t.TempDir(), "--wait")
	if !strings.Contains(line, "CorruptData") {
		t.Fatalf("error does not say the data is corrupt: %s", line)
	}
	t.Log(line)
	// The first recovery point does not use that block and still restores.
	e.restoreDisksMatch(r1.RecoveryPoint, h1)

	// A corrupt manifest: reported by name, the other recovery point still listed.
	manifest := filepath.Join(e.dataDir, "vault", "recoverypoints", r2.RecoveryPoint)
	m, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	m[len(m)/2] ^= 1
	if err := os.WriteFile(manifest, m, 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.cli("rp", "list", "web2")
	if r.code != 0 || !strings.Contains(r.stdout, r1.RecoveryPoint) || strings.Contains(r.stdout, r2.RecoveryPoint) ||
		!strings.Contains(r.stderr, "warning: recoverypoints/"+r2.RecoveryPoint) || !strings.Contains(r.stderr, "corrupt data") {
		t.Fatalf("rp list with a corrupt manifest: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	e.failCLI("corrupt data", "restore", r2.RecoveryPoint, "--disks", t.TempDir(), "--wait")
}

func TestWrongKey(t *testing.T) {
	e := newEnv(t, envOpts{})
	wrong := []string{"VMVAULT_VAULT_PASSPHRASE=not the passphrase"}
	r := e.cliEnv(wrong, "rp", "list")
	if r.code != 1 || len(scanLines(r.stderr)) != 1 || !strings.Contains(r.stderr, "wrong vault key") || !strings.Contains(r.stderr, "file://") {
		t.Fatalf("rp list with wrong key: exit %d, stderr %q", r.code, r.stderr)
	}
	// A worker with the wrong key refuses to start.
	w := e.startWorkerExpectExit(wrong)
	if !strings.Contains(w, "wrong vault key") {
		t.Fatalf("worker with wrong key: %s", w)
	}
	// vault init over an existing vault is refused and changes nothing.
	before := e.objects("")
	e.failCLI("vault already exists", "vault", "init")
	if after := e.objects(""); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("failed vault init changed the vault")
	}
}

func (e *env) startWorkerExpectExit(extra []string) string {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "vmvault-worker"))
	cmd.Env = e.environ(extra)
	out, err := cmd.CombinedOutput()
	if err == nil {
		e.t.Fatal("worker started with a wrong key")
	}
	return string(out)
}

// Limits are enforced before any data moves.
func TestLimits(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	disks := make([]int64, 17)
	for i := range disks {
		disks[i] = mib
	}
	if _, err := vmfixture.Create(e.vmsRoot(), vmfixture.Spec{Name: "many", OSSize: 16 * mib, DataDisks: disks, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	e.failCLI("vm many has 17 data disks, over the limit of 16 (LimitExceeded)", "backup", "many", "--wait")

	if _, err := vmfixture.Create(e.vmsRoot(), vmfixture.Spec{Name: "huge", OSSize: 16 * mib, DataDisks: []int64{mib}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	// Grow the data disk (sparse) past 4095 GB and say so in vm.json.
	growDisk(t, filepath.Join(e.vmsRoot(), "huge"), "data0", 4096<<30)
	e.failCLI("disk data0 is 4096 GB, over the limit of 4095 GB per disk (LimitExceeded)", "backup", "huge", "--wait")

	if n := len(e.objects("packs/")); n != 0 {
		t.Fatalf("%d packs written by refused backups", n)
	}
	if n := len(e.objects("recoverypoints/")); n != 0 {
		t.Fatalf("%d recovery points written by refused backups", n)
	}
	e.failCLI(`vm "nope" not found`, "backup", "nope", "--wait")
}

func growDisk(t *testing.T, vmDir, disk string, size int64) {
	t.Helper()
	if err := os.Truncate(filepath.Join(vmDir, disk+".raw"), size); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(vmDir, "vm.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var vm map[string]any
	if err := json.Unmarshal(b, &vm); err != nil {
		t.Fatal(err)
	}
	for _, d := range vm["disks"].([]any) {
		if dm := d.(map[string]any); dm["name"] == disk {
			dm["size_bytes"] = size
		}
	}
	b, _ = json.Marshal(vm)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A disk held open for writing (QEMU's image locks) is refused, and earlier
// recovery points stay intact.
func TestBusyDiskRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("vm3", 5)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), "vm3")
	want := diskHashes(t, dir)
	r1 := e.backup("vm3")
	release, err := imagelock.HoldWriteLock(filepath.Join(dir, "data0.raw"))
	if err != nil {
		t.Fatal(err)
	}
	line := e.failCLI("data0", "backup", "vm3", "--wait")
	if !strings.Contains(line, "DiskBusy") {
		t.Fatalf("busy disk error: %s", line)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	e.restoreDisksMatch(r1.RecoveryPoint, want)
	if r := e.backup("vm3"); r.Type != "incremental" {
		t.Fatalf("backup after release: %+v", r)
	}
}

// One backup per VM at a time: a second request says so.
func TestOneBackupPerVM(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker([]string{"VMVAULT_READ_LIMIT_MIB=128"})
	spec := vmfixture.Spec{Name: "busy", OSSize: 16 * mib, DataDisks: []int64{512 * mib}, Seed: 1}
	if _, err := vmfixture.Create(e.vmsRoot(), spec); err != nil {
		t.Fatal(err)
	}
	if err := vmfixture.Mutate(e.vmsRoot(), "busy", 0, 512, 2); err != nil {
		t.Fatal(err)
	}
	e.mustCLI("backup", "busy")
	e.failCLI("a backup of vm busy is already running (job backup-busy", "backup", "busy")
	// Wait for the first to finish; then a new backup is accepted.
	if err := e.tp.Client(t).GetWorkflow(context.Background(), "backup-busy", "").Get(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if r := e.backup("busy"); r.Type != "incremental" {
		t.Fatalf("second backup: %+v", r)
	}
}

// Two host workers, each owning different VMs; a central worker runs the
// workflows. Disk work goes to the host that owns the VM.
func TestTwoHosts(t *testing.T) {
	e := newEnv(t, envOpts{})
	rootA, rootB := filepath.Join(e.dataDir, "hostA"), filepath.Join(e.dataDir, "hostB")
	e.startWorker(nil, "--central")
	e.startWorker([]string{"VMVAULT_IMAGES_ROOT=" + rootA}, "--host", "hosta")
	e.startWorker([]string{"VMVAULT_IMAGES_ROOT=" + rootB}, "--host", "hostb")
	if _, err := vmfixture.Create(rootA, smallSpec("alpha", 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := vmfixture.Create(rootB, smallSpec("beta", 7)); err != nil {
		t.Fatal(err)
	}
	if out := e.mustCLI("vm", "list", "--host", "hostb"); !strings.Contains(out, "beta") || strings.Contains(out, "alpha") {
		t.Fatalf("vm list --host hostb:\n%s", out)
	}
	ra := e.backup("alpha", "--host", "hosta")
	rb := e.backup("beta", "--host", "hostb")
	e.failCLI(`vm "alpha" not found`, "backup", "alpha", "--host", "hostb", "--wait")
	// Restores land on the host asked for.
	e.mustCLI("restore", rb.RecoveryPoint, "--new-vm", "beta2", "--host", "hosta", "--wait")
	if got, want := diskHashes(t, filepath.Join(rootA, "beta2")), diskHashes(t, filepath.Join(rootB, "beta")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("beta restored on hosta: %v, want %v", got, want)
	}
	if ra.Type != "full" || rb.Type != "full" {
		t.Fatalf("types %s %s", ra.Type, rb.Type)
	}
}
