package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// corruptBlockOf flips a byte of a data0 block that only rp has (a block
// that differs from the one at the same place in base), so restoring rp
// fails midway while base still restores.
func (e *env) corruptBlockOf(base, rp string) int64 {
	e.t.Helper()
	ctx := context.Background()
	v := e.openVault()
	ids := func(ref string) []vault.ID {
		p, err := v.LoadRecoveryPoint(ctx, ref)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, d := range p.Disks {
			if d.Name == "data0" {
				b, err := v.Repo().BlockIDs(ctx, d.Root)
				if err != nil {
					e.t.Fatal(err)
				}
				return b
			}
		}
		e.t.Fatal("no data0")
		return nil
	}
	old, cur := ids(base), ids(rp)
	for i := len(cur) - 1; i >= 0; i-- { // the last changed block: the restore gets far first
		if cur[i] == old[i] || cur[i].IsZero() {
			continue
		}
		idx, err := v.Repo().Index(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		loc, _ := idx.Lookup(cur[i])
		h := loc.Pack.String()
		p := filepath.Join(e.dataDir, "vault", "packs", h[:2], h)
		b, err := os.ReadFile(p)
		if err != nil {
			e.t.Fatal(err)
		}
		b[int64(loc.Offset)+int64(loc.Length)/2] ^= 0x40
		if err := os.WriteFile(p, b, 0o644); err != nil {
			e.t.Fatal(err)
		}
		return int64(i) * int64(v.Config().BlockSize)
	}
	e.t.Fatal("no block changed between the recovery points")
	return 0
}

// folderState is every file of a VM folder with its sha256.
func folderState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		h, err := vmfixture.SHA256(filepath.Join(dir, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[en.Name()] = h
	}
	return out
}

// A replace restore that fails midway leaves the target byte-identical, and
// a failed new-VM restore leaves no VM behind.
func TestFailedRestoreLeavesTargetsAlone(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("db5", 8)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), "db5")
	r1 := e.backup("db5")
	if err := vmfixture.Mutate(e.vmsRoot(), "db5", 30, 40, 8); err != nil {
		t.Fatal(err)
	}
	r2 := e.backup("db5")
	off := e.corruptBlockOf(r1.RecoveryPoint, r2.RecoveryPoint)

	// The VM changes after the backup: this state must survive the failed restore.
	if err := vmfixture.Mutate(e.vmsRoot(), "db5", 0, 8, 77); err != nil {
		t.Fatal(err)
	}
	before := folderState(t, dir)
	line := e.failCLI(fmt.Sprintf("disk data0 offset %d", off), "restore", r2.RecoveryPoint, "--replace", "--wait")
	if !strings.Contains(line, "CorruptData") {
		t.Fatalf("want a corrupt-data error: %s", line)
	}
	if after := folderState(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a failed replace restore changed the vm folder:\nbefore %v\nafter  %v", before, after)
	}

	e.failCLI("CorruptData", "restore", r2.RecoveryPoint, "--new-vm", "db5-copy", "--wait")
	if _, err := os.Stat(filepath.Join(e.vmsRoot(), "db5-copy")); !os.IsNotExist(err) {
		t.Fatalf("a failed new-vm restore left %s (%v)", filepath.Join(e.vmsRoot(), "db5-copy"), err)
	}
	if out := e.mustCLI("vm", "list"); strings.Contains(out, "db5-copy") {
		t.Fatalf("vm list shows the failed restore's vm:\n%s", out)
	}

	// The good recovery point replaces the disks, and the replaced ones are kept.
	out := e.mustCLI("restore", r1.RecoveryPoint, "--replace", "--wait")
	if !strings.Contains(out, "kept") {
		t.Fatalf("replace restore does not say where the replaced disks are: %s", out)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "data0.raw.replaced-*"))
	if len(kept) != 1 {
		t.Fatalf("replaced data0 kept as %v", kept)
	}
	if h, _ := vmfixture.SHA256(kept[0]); h != before["data0.raw"] {
		t.Fatal("the kept disk is not the replaced one")
	}
	if temp, _ := filepath.Glob(filepath.Join(dir, "temp.raw.replaced-*")); len(temp) != 0 || strings.Contains(out, "disk temp") {
		t.Fatalf("a replaced temp disk (scratch) was kept: %v\n%s", temp, out)
	}
}

// A disks-only restore never writes into the platform's VM folders, never
// replaces a file unless forced, and never follows a symlink.
func TestRestoreDisksRefusals(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("web9", 9)); err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(e.vmsRoot(), "web9")
	rp := e.backup("web9").RecoveryPoint
	before := folderState(t, vmDir)
	e.failCLI("where the platform keeps VM disks", "restore", rp, "--disks", vmDir, "--wait")
	if after := folderState(t, vmDir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a refused disks restore changed the vm folder")
	}
	// A symlink into the images root is the images root.
	link := filepath.Join(t.TempDir(), "sneaky")
	if err := os.Symlink(vmDir, link); err != nil {
		t.Fatal(err)
	}
	e.failCLI("where the platform keeps VM disks", "restore", rp, "--disks", link, "--wait")

	out := filepath.Join(t.TempDir(), "out")
	e.mustCLI("restore", rp, "--disks", out, "--wait")
	e.failCLI("exists", "restore", rp, "--disks", out, "--wait")
	e.mustCLI("restore", rp, "--disks", out, "--force", "--wait")
	if got, want := diskHashes(t, out), diskHashes(t, vmDir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("forced restore %v, want %v", got, want)
	}
	leftovers, _ := filepath.Glob(filepath.Join(out, ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("staging files left behind: %v", leftovers)
	}
}

// A disk file that is a symlink out of the VM folder is neither read by a
// backup nor written by a restore.
func TestSymlinkedDiskRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("evil", 10)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), "evil")
	rp := e.backup("evil").RecoveryPoint
	secret := filepath.Join(t.TempDir(), "secret.raw")
	if err := os.Rename(filepath.Join(dir, "data0.raw"), secret); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "data0.raw")); err != nil {
		t.Fatal(err)
	}
	want, _ := vmfixture.SHA256(secret)
	e.failCLI("symbolic link", "backup", "evil", "--wait")
	e.failCLI("symbolic link", "restore", rp, "--replace", "--wait")
	if got, _ := vmfixture.SHA256(secret); got != want {
		t.Fatal("a restore wrote through a symlink out of the vm folder")
	}
}

// Two workers with different vaults on the same task queues: the job fails
// with a clear mismatch instead of splitting its data across vaults.
func TestVaultMismatch(t *testing.T) {
	e := newEnv(t, envOpts{})
	other := filepath.Join(e.dataDir, "other-vault")
	e.mustCLIEnv([]string{"VMVAULT_VAULT=file://" + other}, "vault", "init")
	e.startWorker(nil, "--central")
	e.startWorker([]string{"VMVAULT_VAULT=file://" + other}, "--host", "local")
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("split", 11)); err != nil {
		t.Fatal(err)
	}
	line := e.failCLI("vault mismatch", "backup", "split", "--wait")
	if !strings.Contains(line, "VaultMismatch") || !strings.Contains(line, other) {
		t.Fatalf("mismatch error does not name the vaults: %s", line)
	}
	for _, be := range []string{"packs/", "recoverypoints/"} {
		if n := len(e.objects(be)); n != 0 {
			t.Fatalf("%d %s objects in the job's vault after a refused split", n, be)
		}
	}
}

// The Temporal histories of real jobs carry no passphrase, key material or
// VM data: only names, ids and counts.
func TestHistoriesHoldNoSecrets(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("quiet", 12)); err != nil {
		t.Fatal(err)
	}
	rp := e.backup("quiet").RecoveryPoint
	if err := vmfixture.Mutate(e.vmsRoot(), "quiet", 5, 2, 12); err != nil {
		t.Fatal(err)
	}
	e.backup("quiet")
	e.mustCLI("restore", rp, "--new-vm", "quiet2", "--wait")
	e.mustCLI("vm", "list")

	c := e.tp.Client(t)
	ctx := context.Background()
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Executions) < 4 {
		t.Fatalf("%d jobs, want the backups, the restore and the inventory", len(resp.Executions))
	}
	forbidden := []string{passphrase, "compressible vmvault data", "sample text line", "changed by the sample workload", "vmvault-sample"}
	for _, ex := range resp.Executions {
		it := c.GetWorkflowHistory(ctx, ex.Execution.WorkflowId, ex.Execution.RunId, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		var all strings.Builder
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			all.WriteString(ev.String())
		}
		h := all.String()
		if len(h) < 100 {
			t.Fatalf("history of %s is empty", ex.Execution.WorkflowId)
		}
		for _, f := range forbidden {
			if strings.Contains(h, f) {
				t.Errorf("history of %s contains %q", ex.Execution.WorkflowId, f)
			}
		}
	}
}

// vault passwd re-keys without rewriting data: the old key stops working,
// the new one restores what was backed up before.
func TestVaultPasswd(t *testing.T) {
	e := newEnv(t, envOpts{})
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("rekey", 13)); err != nil {
		t.Fatal(err)
	}
	w := e.startWorker(nil)
	want := diskHashes(t, filepath.Join(e.vmsRoot(), "rekey"))
	rp := e.backup("rekey").RecoveryPoint
	packs := e.objects("packs/")

	e.failCLI("give the new key", "vault", "passwd")
	e.failCLI("at least 12", "vault", "passwd", "--new-key-file", writeFile(t, "short"))
	const newPass = "a brand new vault passphrase"
	e.mustCLIEnv([]string{"VMVAULT_NEW_VAULT_PASSPHRASE=" + newPass}, "vault", "passwd")
	if after := e.objects("packs/"); fmt.Sprint(after) != fmt.Sprint(packs) {
		t.Fatal("vault passwd rewrote data")
	}
	e.failCLI("wrong vault key", "rp", "list")
	w.kill()
	newKey := []string{"VMVAULT_VAULT_PASSPHRASE=" + newPass}
	if out := e.mustCLIEnv(newKey, "rp", "list", "rekey"); !strings.Contains(out, rp) {
		t.Fatalf("rp list with the new key:\n%s", out)
	}
	e.startWorker(newKey)
	dir := filepath.Join(t.TempDir(), "out")
	e.mustCLIEnv(newKey, "restore", rp, "--disks", dir, "--wait")
	if got := diskHashes(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored with the new key %v, want %v", got, want)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A deleted pack: vault check names every recovery point it hurts, by disk
// and offset; vault repair plus one backup heals them all (the backup
// uploads the lost blocks again, and blocks are named by content).
func TestVaultCheckAndRepair(t *testing.T) {
	e := newEnv(t, envOpts{initArgs: []string{"--pack-size", "4194304"}})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("lost", 14)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), "lost")
	r1 := e.backup("lost").RecoveryPoint
	if err := vmfixture.Mutate(e.vmsRoot(), "lost", 50, 2, 14); err != nil {
		t.Fatal(err)
	}
	r2 := e.backup("lost").RecoveryPoint
	if out := e.mustCLI("vault", "check", "--read-data"); !strings.Contains(out, "every recovery point can be restored") {
		t.Fatalf("check of a healthy vault:\n%s", out)
	}

	// Delete the pack holding the first data0 block both points share.
	ctx := context.Background()
	v := e.openVault()
	p, err := v.LoadRecoveryPoint(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	var ids []vault.ID
	for _, d := range p.Disks {
		if d.Name == "data0" {
			ids, _ = v.Repo().BlockIDs(ctx, d.Root)
		}
	}
	idx, _ := v.Repo().Index(ctx)
	var off int64 = -1
	var pack vault.ID
	for i, id := range ids {
		if !id.IsZero() {
			loc, _ := idx.Lookup(id)
			off, pack = int64(i)*int64(v.Config().BlockSize), loc.Pack
			break
		}
	}
	h := pack.String()
	if err := os.Remove(filepath.Join(e.dataDir, "vault", "packs", h[:2], h)); err != nil {
		t.Fatal(err)
	}

	r := e.cli("vault", "check")
	if r.code != 1 || !strings.Contains(r.stdout, fmt.Sprintf("damaged: %s disk data0 offset %d", r1, off)) ||
		!strings.Contains(r.stdout, fmt.Sprintf("damaged: %s disk data0 offset %d", r2, off)) ||
		!strings.Contains(r.stderr, "is damaged: 2 of 2 recovery points") {
		t.Fatalf("vault check after a lost pack: exit %d\nstdout: %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if out := e.mustCLI("vault", "repair"); !regexp.MustCompile(`removed index/[0-9a-f]{6}/[0-9a-f]{12}-` + h).MatchString(out) {
		t.Fatalf("vault repair:\n%s", out)
	}
	want := diskHashes(t, dir)
	r3 := e.backup("lost").RecoveryPoint
	var rep vault.CheckReport
	rr := e.cli("vault", "check", "--read-data", "--json")
	if err := json.Unmarshal([]byte(rr.stdout), &rep); err != nil {
		t.Fatalf("check --json: %v\n%s", err, rr.stdout)
	}
	// The backup uploaded the lost blocks again (the index no longer trusted
	// them), and blocks are named by content: the older points are whole again.
	if !rep.OK || len(rep.Damaged) != 0 || rr.code != 0 || rep.RecoveryPoints != 3 {
		t.Fatalf("after repair and one backup: exit %d, %+v", rr.code, rep)
	}
	e.restoreDisksMatch(r3, want)
}

// One corrupt index object does not stop backups and restores of other VMs;
// vault check reports it and repair rebuilds it from its pack.
func TestCorruptIndexObject(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	for i, name := range []string{"one", "two"} {
		if _, err := vmfixture.Create(e.vmsRoot(), smallSpec(name, uint64(20+i))); err != nil {
			t.Fatal(err)
		}
	}
	e.backup("one")
	objs := e.objects("index/")
	for k := range objs {
		p := filepath.Join(e.dataDir, "vault", k)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		break
	}
	want := diskHashes(t, filepath.Join(e.vmsRoot(), "two"))
	rp := e.backup("two").RecoveryPoint
	e.restoreDisksMatch(rp, want)
	r := e.cli("vault", "check")
	if !strings.Contains(r.stdout, "index: index/") {
		t.Fatalf("vault check does not report the corrupt index object:\n%s\n%s", r.stdout, r.stderr)
	}
	if out := e.mustCLI("vault", "repair"); !strings.Contains(out, "1 re-indexed") {
		t.Fatalf("vault repair:\n%s", out)
	}
	if out := e.mustCLI("vault", "check", "--read-data"); !strings.Contains(out, "every recovery point can be restored") {
		t.Fatalf("check after repair:\n%s", out)
	}
}
