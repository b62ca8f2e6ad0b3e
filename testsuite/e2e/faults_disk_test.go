package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends; the test is skipped when mounting is refused (not
// root, or no CAP_SYS_ADMIN in a container). Mount before newEnv, so the
// workers stop before the unmount.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs to fill (%v: %s): the disk-full scenario needs root", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a filler file into dir's file system until at most leave
// bytes are free, and returns its path.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		if free <= leave {
			return p
		}
		n := min(int64(len(buf)), free-leave)
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
}

// allFiles lists every file under dir (relative paths, sorted).
func allFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// lastPoint is the recovery point of a backup's --json output.
func lastPoint(t *testing.T, out string) string {
	t.Helper()
	var res workflows.BackupVMResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.RecoveryPoint == "" {
		t.Fatalf("backup output %q: %v", out, err)
	}
	return res.RecoveryPoint
}

func diskSpec(name string, seed uint64) vmfixture.Spec {
	return vmfixture.Spec{Name: name, OSSize: 32 * mib, DataDisks: []int64{48 * mib}, TempSize: 4 * mib, Seed: seed}
}

// A directory vault on a small file system that fills up: the backup that
// runs out of space fails with a one-line reason naming it, leaves no
// temporary or partial object behind and no point that claims to be
// complete; the earlier point still restores; once space is freed the next
// backup succeeds and restores. Then a restore into a full file system
// fails the same way, leaves the target as it was, and works with space.
func TestFaultsDiskFull(t *testing.T) {
	vaultFS := mountTmpfs(t, 96*mib)
	targetFS := mountTmpfs(t, 64*mib)
	vaultDir := filepath.Join(vaultFS, "vault")
	e := newEnv(t, envOpts{vaultDir: vaultDir})
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), diskSpec("full1", 21)); err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(e.vmsRoot(), "full1")
	var jobs faultJobs
	faults := 0
	wrong := 0
	restore := func(rp string, want map[string]string) {
		t.Helper()
		if !e.faultRestore(&jobs, rp, want) {
			wrong++
		}
	}

	h1 := diskHashes(t, vmDir)
	r1 := e.backup("full1")
	jobs.completed++
	t.Logf("first backup: %d new bytes", r1.Totals.NewBytes)

	// Not enough room for the next backup's new data.
	if err := vmfixture.Mutate(e.vmsRoot(), "full1", 0, 24, 22); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, vaultFS, 4*mib)
	points := len(e.objects("recoverypoints/"))
	faults++
	line := e.failCLI("no space left on device", "backup", "full1", "--wait", "--timeout", "3m")
	jobs.failedCleanly++
	t.Logf("backup on a full vault: %s", line)
	if n := len(e.objects("recoverypoints/")); n != points {
		t.Fatalf("the failed backup left %d recovery points, want %d", n, points)
	}
	for _, f := range allFiles(t, vaultDir) {
		if strings.HasPrefix(filepath.Base(f), ".tmp-") {
			t.Errorf("the failed backup left a temporary file %s", f)
		}
	}
	if out := e.mustCLI("vault", "check", "--read-data"); !strings.Contains(out, "every recovery point can be restored") {
		t.Fatalf("vault check after the failed backup:\n%s", out)
	}
	restore(r1.RecoveryPoint, h1)

	// Space freed: the next backup succeeds, and restores.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h2 := diskHashes(t, vmDir)
	r2 := e.backup("full1")
	jobs.completed++
	restore(r2.RecoveryPoint, h2)
	restore(r1.RecoveryPoint, h1)

	// Space running out at other moments: a small change against a little
	// free room fails while writing a pack, an index object, a checkpoint or
	// the manifest, or just fits. Either way nothing half-written counts.
	leaves := []int64{0, 64 << 10, 512 << 10, mib, 1536 << 10, 2 * mib, 3 * mib}
	for k := int64(1); k < 8; k++ { // the pack fits, then what follows it may not
		leaves = append(leaves, mib+k*16<<10)
	}
	last := faultPoint{r2.RecoveryPoint, h2}
	for i, leave := range pickFaults(t, leaves, 1) {
		if err := vmfixture.Mutate(e.vmsRoot(), "full1", int64(30+i), 1, uint64(60+i)); err != nil {
			t.Fatal(err)
		}
		h := diskHashes(t, vmDir)
		points := len(e.objects("recoverypoints/"))
		filler := fill(t, vaultFS, leave)
		out, ok := e.jobCLI(&jobs, "backup", "full1", "--wait", "--json", "--timeout", "3m")
		if !ok {
			faults++ // the space ran out (else the backup just fit)
		}
		if !ok && !strings.Contains(out, "(NoSpace)") {
			t.Fatalf("backup with %d bytes free failed for another reason: %s", leave, out)
		}
		t.Logf("backup with %d bytes free: ok %v %s", leave, ok, map[bool]string{true: "", false: out}[ok])
		if !ok {
			if n := len(e.objects("recoverypoints/")); n != points {
				t.Fatalf("the failed backup left %d recovery points, want %d", n, points)
			}
			if out := e.mustCLI("vault", "check"); !strings.Contains(out, "every recovery point can be restored") {
				t.Fatalf("vault check after a backup with %d bytes free:\n%s", leave, out)
			}
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		if !ok {
			res := e.backup("full1")
			jobs.completed++
			last = faultPoint{res.RecoveryPoint, h}
		} else {
			last = faultPoint{lastPoint(t, out), h}
		}
		restore(last.rp, last.hash)
	}
	restore(r1.RecoveryPoint, h1)

	v := e.openVault()
	idx, err := v.Repo().Index(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dups := idx.Stats().Duplicates

	// A restore into a full file system.
	target := filepath.Join(targetFS, "out")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := allFiles(t, target)
	filler = fill(t, targetFS, 8*mib)
	faults++
	line = e.failCLI("no space left on device", "restore", r2.RecoveryPoint, "--disks", target, "--wait", "--timeout", "3m")
	jobs.failedCleanly++
	t.Logf("restore into a full file system: %s", line)
	if after := allFiles(t, target); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the failed restore changed its target: before %v, after %v", before, after)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	e.mustCLI("restore", r2.RecoveryPoint, "--disks", target, "--wait")
	jobs.completed++
	jobs.restores++
	if got := diskHashes(t, target); got["os"] != h2["os"] || got["data0"] != h2["data0"] {
		wrong++
		t.Errorf("restore after space was freed: %v, want %v", got, h2)
	}
	recordFaults(t, faultOutcome{
		Scenario:      "disk full under a directory vault and a restore target",
		Faults:        faults,
		Completed:     jobs.completed,
		FailedCleanly: jobs.failedCleanly,
		Restores:      jobs.restores,
		WrongRestores: wrong,
		Leaks:         dups,
	})
}
