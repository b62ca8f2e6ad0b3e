package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

// badRow is one bad input: the command must fail with exit code != 0 and
// exactly one error line holding every string of want.
type badRow struct {
	name string
	args []string
	env  []string
	// setup prepares the input (a broken inventory entry) before the command.
	setup func(t *testing.T, b *badBench)
	want  []string
}

// badBench is what the rows share: the env, its VM and its two points.
type badBench struct {
	e          *env
	vm         string
	rp1, rp2   string
	qemuInv    string
	scratch    string
	hostileQMP string
}

// writeInventoryVM writes an images VM folder name under root whose vm.json is
// data, with a 1 MiB os.raw beside it.
func writeInventoryVM(t *testing.T, root, name, data string) string {
	t.Helper()
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vm.json"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "os.raw"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// goodVM is a valid vm.json for name with the disks given (JSON objects).
func goodVM(name string, disks ...string) string {
	if len(disks) == 0 {
		disks = []string{`{"name":"os","role":"os","file":"os.raw"}`}
	}
	return fmt.Sprintf(`{"name":%q,"os":"linux","cpu":1,"memory_mb":512,"disks":[%s]}`, name, strings.Join(disks, ","))
}

// vaultState is every object of the vault with its size and sha256.
func (e *env) vaultState() map[string]string {
	e.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for k, n := range e.objects("") {
		b, err := e.be.Get(ctx, k)
		if err != nil {
			e.t.Fatal(err)
		}
		h := sha256.Sum256(b)
		out[k] = fmt.Sprintf("%d %s", n, hex.EncodeToString(h[:8]))
	}
	return out
}

func diffState(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if after[k] != v {
			d = append(d, fmt.Sprintf("%s: %q -> %q", k, v, after[k]))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			d = append(d, fmt.Sprintf("%s: new (%s)", k, v))
		}
	}
	sort.Strings(d)
	return d
}

// Bad input at every edge: each row fails with a non-zero exit and one
// error line that names the field (and the file, for inventory files), and
// none of them changes a byte of the vault.
func TestBadInput(t *testing.T) {
	start := time.Now()
	e := newEnv(t, envOpts{})
	b := &badBench{e: e, vm: "bad1", scratch: t.TempDir()}
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec(b.vm, 41)); err != nil {
		t.Fatal(err)
	}
	e.startWorker(nil)
	want := diskHashes(t, filepath.Join(e.vmsRoot(), b.vm))
	b.rp1 = e.backup(b.vm).RecoveryPoint
	if err := vmfixture.Mutate(e.vmsRoot(), b.vm, 10, 3, 41); err != nil {
		t.Fatal(err)
	}
	want2 := diskHashes(t, filepath.Join(e.vmsRoot(), b.vm))
	b.rp2 = e.backup(b.vm).RecoveryPoint
	b.qemuInv = filepath.Join(e.dataDir, "qemu")
	e.startWorker([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + b.qemuInv, "VMVAULT_HOST=qhost"})
	b.hostileQMP = hostileQMP(t, b.scratch)
	t.Logf("setup took %v", time.Since(start))

	before := e.vaultState()
	rows := badRows(b)
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			if r.setup != nil {
				r.setup(t, b)
			}
			res := e.cliEnv(r.env, r.args...)
			if res.code == 0 {
				t.Fatalf("vmvault %s succeeded, want a failure\nstdout: %s", strings.Join(r.args, " "), res.stdout)
			}
			lines := nonProgressLines(res.stderr)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "vmvault: ") {
				t.Fatalf("vmvault %s: exit %d, want one error line, got:\n%s", strings.Join(r.args, " "), res.code, res.stderr)
			}
			t.Logf("exit %d: %s", res.code, lines[0])
			for _, w := range r.want {
				if !strings.Contains(lines[0], w) {
					t.Fatalf("vmvault %s: error does not name %q:\n%s", strings.Join(r.args, " "), w, lines[0])
				}
			}
		})
	}
	// Commands given a vault that is not there leave nothing there.
	for _, dir := range []string{"none", "v2", "v3", "v4", "v5"} {
		if _, err := os.Stat(filepath.Join(b.scratch, dir)); !os.IsNotExist(err) {
			t.Errorf("a refused command left %s behind (%v)", filepath.Join(b.scratch, dir), err)
		}
	}
	if d := diffState(before, e.vaultState()); len(d) > 0 {
		t.Fatalf("bad input changed the vault:\n%s", strings.Join(d, "\n"))
	}
	e.restoreDisksMatch(b.rp1, want)
	e.restoreDisksMatch(b.rp2, want2)
	t.Logf("%d rows; whole test %v", len(rows), time.Since(start))
}

// hostileQMP serves QMP sockets that answer garbage: a greeting that is
// not QMP, then one that never ends. It returns the folder of the sockets.
func hostileQMP(t *testing.T, dir string) string {
	t.Helper()
	serve := func(name string, answer func(net.Conn)) {
		l, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); answer(c) }()
			}
		}()
	}
	serve("notqmp.sock", func(c net.Conn) { c.Write([]byte(`{"hello":"world"}` + "\n")) })
	serve("endless.sock", func(c net.Conn) {
		c.Write([]byte(`{"QMP":{"version":{"qemu":{"major":9,"minor":0,"micro":0},"package":""},"capabilities":[]}}` + "\n"))
		c.Write([]byte(`{"return":"`))
		chunk := []byte(strings.Repeat("A", 1<<16))
		c.SetWriteDeadline(time.Now().Add(time.Minute))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	return dir
}

func qemuVM(t *testing.T, b *badBench, name, qemuJSON string) {
	t.Helper()
	dir := writeInventoryVM(t, b.qemuInv, name, goodVM(name))
	if qemuJSON != "" {
		if err := os.WriteFile(filepath.Join(dir, "qemu.json"), []byte(qemuJSON), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func badRows(b *badBench) []badRow {
	var rows []badRow
	for _, group := range []func(*badBench) []badRow{cliRows, inventoryRows, qemuRows, policyRows, pointRows, vaultRows} {
		rows = append(rows, group(b)...)
	}
	return rows
}

// cliRows: command lines, flags and VMVAULT_ variables.
func cliRows(b *badBench) []badRow {
	return []badRow{
		{name: "unknown command", args: []string{"bakcup", b.vm}, want: []string{`"bakcup"`}},
		{name: "unknown flag", args: []string{"backup", b.vm, "--bogus"}, want: []string{"--bogus"}},
		{name: "missing vm", args: []string{"backup"}, want: []string{"VM name"}},
		{name: "two vms", args: []string{"backup", b.vm, "other"}, want: []string{"VM name"}},
		{name: "bad timeout", args: []string{"backup", b.vm, "--timeout", "soon"}, want: []string{"--timeout", `"soon"`}},
		{name: "negative timeout", args: []string{"backup", b.vm, "--timeout", "-5m"}, want: []string{"--timeout", "-5m"}},
		{name: "zero timeout", args: []string{"restore", b.rp1, "--disks", b.scratch + "/r0", "--timeout", "0s"}, want: []string{"--timeout"}},
		{name: "unknown consistency", args: []string{"backup", b.vm, "--consistency", "perfect"}, want: []string{"consistency", `"perfect"`}},
		{name: "keep-for without keep", args: []string{"backup", b.vm, "--keep-for", "1h"}, want: []string{"--keep-for"}},
		{name: "negative keep-for", args: []string{"backup", b.vm, "--keep-snapshot", "--keep-for", "-1h"}, want: []string{"--keep-for"}},
		{name: "restore two targets", args: []string{"restore", b.rp1, "--new-vm", "x", "--replace"}, want: []string{"exactly one of"}},
		{name: "restore bad new vm", args: []string{"restore", b.rp1, "--new-vm", "../evil", "--wait"}, want: []string{`"../evil"`}},
		{name: "restore relative disks dir", args: []string{"restore", b.rp1, "--disks", "", "--wait"}, want: []string{"--disks"}},
		{name: "check subset", args: []string{"vault", "check", "--read-data-subset", "150%"}, want: []string{"--read-data-subset", "150%"}},
		{name: "init block size", args: []string{"vault", "init", "--vault", "file://" + b.scratch + "/v2", "--block-size", "3000"}, want: []string{"block", "3000"}},
		{name: "init pack size", args: []string{"vault", "init", "--vault", "file://" + b.scratch + "/v3", "--pack-size", "-1"}, want: []string{"pack", "-1"}},
		{name: "init compression", args: []string{"vault", "init", "--vault", "file://" + b.scratch + "/v4", "--compression", "lzma"}, want: []string{"compression", "lzma"}},
		{name: "init over a vault", args: []string{"vault", "init"}, want: []string{"exists"}},
		{name: "gc negative grace", args: []string{"vault", "gc", "--grace", "-1h"}, want: []string{"--grace", "-1h"}},
		{name: "gc repack", args: []string{"vault", "gc", "--dry-run", "--repack-below", "250"}, want: []string{"--repack-below", "250"}},
		{name: "retention negative daily", args: []string{"retention", "run", "--vm", b.vm, "--daily", "-1"}, want: []string{"daily", "-1"}},
		{name: "retention negative keep", args: []string{"retention", "run", "--keep-deleted-for", "-24h"}, want: []string{"--keep-deleted-for"}},
		{name: "bad env duration", args: []string{"rp", "list"}, env: []string{"VMVAULT_HEARTBEAT_TIMEOUT=often"}, want: []string{"VMVAULT_HEARTBEAT_TIMEOUT"}},
		{name: "negative env timeout", args: []string{"backup", b.vm}, env: []string{"VMVAULT_BACKUP_TIMEOUT=-1h"}, want: []string{"VMVAULT_BACKUP_TIMEOUT"}},
		{name: "bad env limit", args: []string{"rp", "list"}, env: []string{"VMVAULT_MAX_PROTECTED_VMS=-3"}, want: []string{"VMVAULT_MAX_PROTECTED_VMS"}},
	}
}

// inventoryRows: unknown VMs and broken vm.json entries.
func inventoryRows(b *badBench) []badRow {
	vmsRoot := b.e.vmsRoot()
	inv := func(name, data string) func(*testing.T, *badBench) {
		return func(t *testing.T, _ *badBench) { writeInventoryVM(t, vmsRoot, name, data) }
	}
	vmPath := func(name string) string { return filepath.Join(vmsRoot, name, "vm.json") }
	backupOf := func(vm string) []string { return []string{"backup", vm, "--wait"} }
	data17 := []string{`{"name":"os","role":"os","file":"os.raw"}`}
	for i := 0; i < 17; i++ {
		data17 = append(data17, fmt.Sprintf(`{"name":"d%d","role":"data","lun":%d,"file":"d%d.raw"}`, i, i, i))
	}
	return []badRow{
		{name: "unknown vm", args: backupOf("nosuchvm"), want: []string{"nosuchvm"}},
		{name: "vm name with a path", args: backupOf("../etc"), want: []string{`"../etc"`}},
		{name: "vm.json syntax", setup: inv("syn", `{"name":"syn",`), args: backupOf("syn"), want: []string{vmPath("syn")}},
		{name: "vm.json wrong type", setup: inv("typ", `{"name":"typ","os":"linux","cpu":"two","disks":[]}`), args: backupOf("typ"), want: []string{vmPath("typ"), "cpu"}},
		{name: "vm.json no os", setup: inv("noos", `{"name":"noos","disks":[{"name":"os","role":"os","file":"os.raw"}]}`), args: backupOf("noos"), want: []string{vmPath("noos"), "os"}},
		{name: "vm.json no disks", setup: inv("nodisk", `{"name":"nodisk","os":"linux"}`), args: backupOf("nodisk"), want: []string{vmPath("nodisk"), "disks"}},
		{name: "vm.json bad role", setup: inv("role", goodVM("role", `{"name":"os","role":"boot","file":"os.raw"}`)), args: backupOf("role"), want: []string{vmPath("role"), "disks[0].role", "boot"}},
		{name: "vm.json two os disks", setup: inv("twoos", goodVM("twoos", `{"name":"os","role":"os","file":"os.raw"}`, `{"name":"os2","role":"os","file":"os2.raw"}`)), args: backupOf("twoos"), want: []string{vmPath("twoos"), "os"}},
		{name: "vm.json size differs", setup: inv("size", goodVM("size", `{"name":"os","role":"os","file":"os.raw","size_bytes":5000000000000}`)), args: backupOf("size"), want: []string{vmPath("size"), "size_bytes"}},
		{name: "vm.json name differs", setup: inv("other", goodVM("another")), args: backupOf("other"), want: []string{vmPath("other"), "name"}},
		{name: "disk outside", setup: inv("out", goodVM("out", `{"name":"os","role":"os","file":"../bad1/os.raw"}`)), args: backupOf("out"), want: []string{vmPath("out"), "disks[0].file"}},
		{name: "disk absolute", setup: inv("abs", goodVM("abs", `{"name":"os","role":"os","file":"/etc/passwd"}`)), args: backupOf("abs"), want: []string{vmPath("abs"), "disks[0].file"}},
		{name: "disk absent", setup: inv("absent", goodVM("absent", `{"name":"os","role":"os","file":"gone.raw"}`)), args: backupOf("absent"), want: []string{"gone.raw"}},
		{name: "disk symlink", setup: func(t *testing.T, _ *badBench) {
			dir := writeInventoryVM(t, vmsRoot, "link", goodVM("link", `{"name":"os","role":"os","file":"os.raw"}`))
			os.Remove(filepath.Join(dir, "os.raw"))
			if err := os.Symlink(filepath.Join(vmsRoot, b.vm, "os.raw"), filepath.Join(dir, "os.raw")); err != nil {
				t.Fatal(err)
			}
		}, args: backupOf("link"), want: []string{"os.raw", "symbolic link"}},
		{name: "duplicate disk", setup: inv("dup", goodVM("dup", `{"name":"os","role":"os","file":"os.raw"}`, `{"name":"os","role":"data","lun":0,"file":"os.raw"}`)), args: backupOf("dup"), want: []string{vmPath("dup"), "disks[1].name"}},
		{name: "huge disk", setup: func(t *testing.T, _ *badBench) {
			dir := writeInventoryVM(t, vmsRoot, "huge", goodVM("huge", `{"name":"os","role":"os","file":"os.raw"}`, `{"name":"data0","role":"data","lun":0,"file":"big.raw"}`))
			sparse(t, filepath.Join(dir, "big.raw"), 4096<<30)
		}, args: backupOf("huge"), want: []string{"huge", "4095"}},
		{name: "negative size", setup: inv("neg", goodVM("neg", `{"name":"os","role":"os","file":"os.raw","size_bytes":-1}`)), args: backupOf("neg"), want: []string{vmPath("neg"), "disks[0].size_bytes"}},
		{name: "17 data disks", setup: func(t *testing.T, _ *badBench) {
			dir := writeInventoryVM(t, vmsRoot, "many", goodVM("many", data17...))
			for i := 0; i < 17; i++ {
				sparse(t, filepath.Join(dir, fmt.Sprintf("d%d.raw", i)), 1<<20)
			}
		}, args: backupOf("many"), want: []string{"many", "17 data disks", "16"}},
		{name: "vm.json is a symlink", setup: func(t *testing.T, _ *badBench) {
			dir := writeInventoryVM(t, vmsRoot, "jlink", "")
			os.Remove(filepath.Join(dir, "vm.json"))
			os.Symlink(filepath.Join(vmsRoot, b.vm, "vm.json"), filepath.Join(dir, "vm.json"))
		}, args: backupOf("jlink"), want: []string{vmPath("jlink")}},
	}
}

// qemuRows: broken qemu.json entries and QMP sockets that answer garbage.
func qemuRows(b *badBench) []badRow {
	qinv := func(name, data string) func(*testing.T, *badBench) {
		return func(t *testing.T, b *badBench) { qemuVM(t, b, name, data) }
	}
	qPath := func(name string) string { return filepath.Join(b.qemuInv, name, "qemu.json") }
	qbackup := func(vm string) []string { return []string{"backup", vm, "--host", "qhost", "--wait"} }
	return []badRow{
		{name: "qemu.json syntax", setup: qinv("qsyn", `{"qmp_socket":`), args: qbackup("qsyn"), want: []string{qPath("qsyn")}},
		{name: "qemu.json wrong type", setup: qinv("qtyp", `{"nodes":["disk-os"]}`), args: qbackup("qtyp"), want: []string{qPath("qtyp"), "nodes"}},
		{name: "qemu.json unknown field", setup: qinv("qtypo", `{"qmp_sock":"x.sock"}`), args: qbackup("qtypo"), want: []string{qPath("qtypo"), "qmp_sock"}},
		{name: "qemu.json socket outside", setup: qinv("qout", `{"qmp_socket":"../x.sock"}`), args: qbackup("qout"), want: []string{qPath("qout"), "qmp_socket"}},
		{name: "qemu.json unknown disk", setup: qinv("qdisk", `{"nodes":{"data9":"disk-data9"}}`), args: qbackup("qdisk"), want: []string{qPath("qdisk"), "nodes.data9"}},
		{name: "qemu.json bad node", setup: qinv("qnode", `{"nodes":{"os":"disk os"}}`), args: qbackup("qnode"), want: []string{qPath("qnode"), "nodes.os"}},
		{name: "qemu.json shared node", setup: func(t *testing.T, b *badBench) {
			dir := writeInventoryVM(t, b.qemuInv, "qshare", goodVM("qshare", `{"name":"os","role":"os","file":"os.raw"}`, `{"name":"data0","role":"data","lun":0,"file":"data0.raw"}`))
			sparse(t, filepath.Join(dir, "data0.raw"), 1<<20)
			os.WriteFile(filepath.Join(dir, "qemu.json"), []byte(`{"nodes":{"data0":"disk-os"}}`), 0o644)
		}, args: qbackup("qshare"), want: []string{qPath("qshare"), "nodes.data0", "disk-os"}},
		{name: "qmp not qmp", setup: qinv("qgarb", fmt.Sprintf(`{"qmp_socket":%q}`, filepath.Join(b.hostileQMP, "notqmp.sock"))), args: qbackup("qgarb"), want: []string{"qgarb", "qmp_socket", "no QMP greeting"}},
		{name: "qmp endless", setup: qinv("qend", fmt.Sprintf(`{"qmp_socket":%q}`, filepath.Join(b.hostileQMP, "endless.sock"))), args: qbackup("qend"), want: []string{"qend", "qmp_socket", "over 8388608 bytes"}},
	}
}

// policyRows: policies, protection and schedules.
func policyRows(b *badBench) []badRow {
	return []badRow{
		{name: "policy time", args: []string{"policy", "create", "p1", "--time", "25:00"}, want: []string{"schedule.times", "25:00"}},
		{name: "policy zone", args: []string{"policy", "create", "p1", "--time-zone", "Mars/Olympus"}, want: []string{"schedule.time_zone", "Mars/Olympus"}},
		{name: "policy local zone", args: []string{"policy", "create", "p1", "--time-zone", "Local"}, want: []string{"schedule.time_zone", "Local"}},
		{name: "policy daily", args: []string{"policy", "create", "p1", "--daily", "3"}, want: []string{"retention.daily", "3"}},
		{name: "policy weekly", args: []string{"policy", "create", "p1", "--weekly", "-1"}, want: []string{"retention.weekly", "-1"}},
		{name: "policy yearly", args: []string{"policy", "create", "p1", "--yearly", "100"}, want: []string{"retention.yearly", "100"}},
		{name: "policy hourly standard", args: []string{"policy", "create", "p1", "--frequency", "hourly", "--every-hours", "6", "--window-start", "06:00", "--window-hours", "12"}, want: []string{"schedule.frequency", "enhanced"}},
		{name: "policy every hours", args: []string{"policy", "create", "p1", "--tier", "enhanced", "--frequency", "hourly", "--every-hours", "5", "--window-start", "06:00", "--window-hours", "10"}, want: []string{"schedule.every_hours", "5"}},
		{name: "policy instant restore", args: []string{"policy", "create", "p1", "--instant-restore-days", "40"}, want: []string{"instant_restore_days", "40"}},
		{name: "policy tier", args: []string{"policy", "create", "p1", "--tier", "platinum"}, want: []string{"tier", "platinum"}},
		{name: "policy consistency", args: []string{"policy", "create", "p1", "--consistency", "perfect"}, want: []string{"consistency", "perfect"}},
		{name: "policy weekday", args: []string{"policy", "create", "p1", "--frequency", "weekly", "--weekdays", "mon,funday"}, want: []string{"schedule.weekdays", "funday"}},
		{name: "policy two times", args: []string{"policy", "create", "p1", "--time", "01:00,13:00"}, want: []string{"schedule.times"}},
		{name: "policy name", args: []string{"policy", "create", "Bad Name"}, want: []string{"name", "Bad Name"}},
		{name: "policy exists", args: []string{"policy", "create", "default"}, want: []string{"default"}},
		{name: "policy update unknown", args: []string{"policy", "update", "nosuchpolicy", "--daily", "10"}, want: []string{"nosuchpolicy"}},
		{name: "policy delete default", args: []string{"policy", "delete", "default"}, want: []string{"default"}},
		{name: "protect unknown policy", args: []string{"protect", b.vm, "--policy", "nosuchpolicy"}, want: []string{"nosuchpolicy"}},
		{name: "check schedule time", args: []string{"vault", "check-schedule", "--at", "24:30"}, want: []string{"--at", "24:30"}},
		{name: "check schedule zone", args: []string{"vault", "check-schedule", "--time-zone", "Nowhere/City"}, want: []string{"--time-zone", "Nowhere/City"}},
		{name: "check schedule local", args: []string{"vault", "check-schedule", "--time-zone", "Local"}, want: []string{"--time-zone", "Local"}},
	}
}

// pointRows: recovery point ids and job names.
func pointRows(b *badBench) []badRow {
	return []badRow{
		{name: "rp unknown", args: []string{"restore", b.vm + "/20200101T000000Z-000000", "--disks", b.scratch + "/r1", "--wait"}, want: []string{b.vm + "/20200101T000000Z-000000"}},
		{name: "rp malformed", args: []string{"restore", "no/such/point!", "--disks", b.scratch + "/r2", "--wait"}, want: []string{"no/such/point!"}},
		{name: "rp bare unknown", args: []string{"restore", "20200101T000000Z-000000", "--disks", b.scratch + "/r3", "--wait"}, want: []string{"20200101T000000Z-000000"}},
		{name: "rp prefix", args: []string{"restore", b.rp1[:len(b.rp1)-3], "--disks", b.scratch + "/r4", "--wait"}, want: []string{b.rp1[:len(b.rp1)-3]}},
		{name: "rp of another vm", args: []string{"restore", "other" + b.rp1[len(b.vm):], "--disks", b.scratch + "/r5", "--wait"}, want: []string{"other" + b.rp1[len(b.vm):]}},
		{name: "rp replace other vm", args: []string{"restore", b.rp1, "--replace", "--vm", "nosuchvm", "--wait"}, want: []string{"nosuchvm"}},
		{name: "rp undelete live", args: []string{"rp", "undelete", b.rp1}, want: []string{b.rp1}},
		{name: "rp delete unknown", args: []string{"rp", "delete", b.vm + "/20200101T000000Z-000000"}, want: []string{"20200101T000000Z-000000"}},
		{name: "job unknown", args: []string{"job", "show", "backup-neverbackedup"}, want: []string{"backup-neverbackedup"}},
	}
}

// vaultRows: vault URLs and keys.
func vaultRows(b *badBench) []badRow {
	aFile := filepath.Join(b.scratch, "a-file")
	os.WriteFile(aFile, []byte("not a vault"), 0o644)
	return []badRow{
		{name: "vault scheme", args: []string{"rp", "list", "--vault", "ftp://host/x"}, want: []string{"ftp://host/x"}},
		{name: "vault no bucket", args: []string{"rp", "list", "--vault", "s3:///prefix"}, want: []string{"s3:///prefix"}},
		{name: "vault relative", args: []string{"rp", "list", "--vault", "file://relative/dir"}, want: []string{"relative/dir", "no vault"}},
		{name: "vault is a file", args: []string{"rp", "list", "--vault", "file://" + aFile}, want: []string{aFile}},
		{name: "vault missing", args: []string{"rp", "list", "--vault", "file://" + b.scratch + "/none"}, want: []string{b.scratch + "/none"}},
		{name: "wrong passphrase", args: []string{"rp", "list"}, env: []string{"VMVAULT_VAULT_PASSPHRASE=not the right passphrase"}, want: []string{"wrong vault key"}},
		{name: "short passphrase", args: []string{"vault", "init", "--vault", "file://" + b.scratch + "/v5"}, env: []string{"VMVAULT_VAULT_PASSPHRASE=short"}, want: []string{"12"}},
		{name: "missing key file", args: []string{"rp", "list"}, env: []string{"VMVAULT_VAULT_PASSPHRASE=", "VMVAULT_VAULT_KEY_FILE=" + b.scratch + "/nokey"}, want: []string{b.scratch + "/nokey"}},
	}
}

// sparse makes a sparse file of size bytes.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Skipf("no sparse file of %d bytes here: %v", size, err)
	}
}
