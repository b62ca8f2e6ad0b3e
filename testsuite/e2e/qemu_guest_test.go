package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/guestext"
	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
	"github.com/vmvault/vmvault/testsuite/guest"
)

// The writer writes and syncs one small file after another and records the
// last synced one in /run (tmpfs: not frozen, not in the backup).
const guestWriter = `mkdir -p /root/w; i=0; while :; do i=$((i+1)); echo "file $i" > /root/w/f$i; sync /root/w/f$i; echo $i > /run/writer-last; sleep 0.02; done`

// A running Linux guest backed up by the qemu platform through its guest
// agent: the extension is installed on the first backup, pre- and
// post-scripts run around the freeze, the recovery point is app-consistent
// (file-consistent when a pre-script fails), a freeze the host never ends
// is ended by the guest's watchdog, and the restored disk is fsck-clean,
// holds every file synced before the snapshot, and boots.
func TestQEMUGuestConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a Linux guest")
	}
	for _, tool := range []string{"qemu-img", "e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", tool)
		}
	}
	_, _, rootfs := guest.Image(t)
	e := newEnv(t, envOpts{})
	inv := filepath.Join(e.dataDir, "qemu")
	dir := filepath.Join(inv, "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "os.raw")
	if out, err := exec.Command("cp", "--sparse=always", "--reflink=auto", rootfs, disk).CombinedOutput(); err != nil {
		t.Fatalf("copy the guest image: %v: %s", err, out)
	}
	st, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(platform.VM{Name: "web", OS: platform.OSLinux, CPUs: 1, MemoryMB: 512, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.raw", Format: "raw", SizeBytes: st.Size()},
	}})
	if err := os.WriteFile(filepath.Join(dir, "vm.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	vm := guest.Boot(t, dir, guest.Options{Disk: disk, Format: "raw"})
	e.startWorker([]string{"VMVAULT_PLATFORM=qemu", "VMVAULT_QEMU_INVENTORY=" + inv})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// QEMU's agent socket serves one client at a time: the test connects
	// only between backups.
	agent := func(f func(c *qga.Client)) {
		t.Helper()
		c, err := qga.Dial(ctx, vm.Agent)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f(c)
	}
	sh := func(script string) (out string) {
		t.Helper()
		agent(func(c *qga.Client) {
			r, err := c.Exec(ctx, qga.Command{Path: "/bin/sh", Args: []string{"-c", script}})
			if err != nil || r.ExitCode != 0 {
				t.Fatalf("guest: %s: %v exit %d: %s", script, err, r.ExitCode, r.Stderr)
			}
			out = strings.TrimSpace(string(r.Stdout))
		})
		return out
	}
	installed := func() int {
		t.Helper()
		var v int
		agent(func(c *qga.Client) {
			var err error
			if v, err = guestext.Installed(ctx, c); err != nil {
				t.Fatal(err)
			}
		})
		return v
	}
	if v := installed(); v != 0 {
		t.Fatalf("extension before the first backup: version %d; want none", v)
	}
	agent(func(c *qga.Client) {
		if _, err := c.Spawn(ctx, qga.Command{Path: "/bin/sh", Args: []string{"-c", guestWriter}}); err != nil {
			t.Fatal(err)
		}
	})
	// The guest's owner drops scripts where the extension looks for them.
	sh(`mkdir -p /etc/vmvault/pre.d /etc/vmvault/post.d
printf '#!/bin/sh\necho "pre $VMVAULT_SNAPSHOT writer=$(cat /run/writer-last)" > /root/pre-mark\n' > /etc/vmvault/pre.d/10-mark
printf '#!/bin/sh\necho "post $VMVAULT_SNAPSHOT $VMVAULT_CONSISTENCY" > /root/post-mark\n' > /etc/vmvault/post.d/10-mark
chmod +x /etc/vmvault/pre.d/10-mark /etc/vmvault/post.d/10-mark
sleep 1`)

	app := e.backup("web")
	notes := strings.Join(app.Notes, "\n")
	t.Logf("first backup: %s; notes:\n%s", app.Consistency, notes)
	if app.Consistency != platform.AppConsistent {
		t.Fatalf("first backup is %s, want app-consistent", app.Consistency)
	}
	if !strings.Contains(notes, fmt.Sprintf("backup extension %d installed", guestext.Version)) || !strings.Contains(notes, "pre-script ok 10-mark") {
		t.Fatalf("the job does not say the extension was installed and the pre-script ran: %q", notes)
	}
	if v := installed(); v != guestext.Version {
		t.Fatalf("extension after the first backup: version %d, want %d", v, guestext.Version)
	}
	preMark := sh("cat /root/pre-mark")
	if post := sh("cat /root/post-mark"); !strings.HasSuffix(post, " app-consistent") {
		t.Fatalf("post-mark %q: want the post-script told app-consistent", post)
	}
	m := regexp.MustCompile(`writer=(\d+)$`).FindStringSubmatch(preMark)
	if m == nil {
		t.Fatalf("pre-mark %q has no writer count", preMark)
	}
	synced, _ := strconv.Atoi(m[1])

	// A failing pre-script: the freeze still makes it file-consistent. And
	// the guest's extension is one version older: the backup upgrades it.
	sh(`printf '#!/bin/sh\necho flush failed >&2; exit 7\n' > /etc/vmvault/pre.d/10-mark
sed -i 's/^VERSION=.*/VERSION=` + fmt.Sprint(guestext.Version-1) + `/' ` + guestext.Path)
	if v := installed(); v != guestext.Version-1 {
		t.Fatalf("the made-older extension reports %d", v)
	}
	file := e.backup("web")
	notes = strings.Join(file.Notes, "\n")
	if file.Consistency != platform.FileConsistent || !strings.Contains(notes, "fail 10-mark exit 7") {
		t.Fatalf("with a failing pre-script: %s, notes %q; want file-consistent naming the script", file.Consistency, file.Notes)
	}
	if !strings.Contains(notes, fmt.Sprintf("backup extension %d upgraded from %d", guestext.Version, guestext.Version-1)) || installed() != guestext.Version {
		t.Fatalf("the older extension was not upgraded: %q", notes)
	}

	t.Run("FreezeNeverOutlivesItsJob", func(t *testing.T) {
		// The host freezes and then vanishes (as a killed worker would):
		// the guest's watchdog thaws it, and the next backup cleans up.
		agent(func(c *qga.Client) {
			if err := guestext.Arm(ctx, c, "test-watchdog", 3*time.Second, true); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Freeze(ctx); err != nil {
				t.Fatal(err)
			}
		})
		q, err := qmp.Dial(ctx, vm.QMP)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Execute(ctx, "block-dirty-bitmap-add", map[string]any{"node": vm.Node, "name": "probe"}, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if n := probeCount(t, ctx, q, vm.Node); n != 0 {
			t.Fatalf("%d bytes written while frozen", n)
		}
		deadline := time.Now().Add(30 * time.Second)
		for probeCount(t, ctx, q, vm.Node) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the guest is still frozen 30 s after its watchdog's 3 s")
			}
			time.Sleep(500 * time.Millisecond)
		}
		q.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": vm.Node, "name": "probe"}, nil)
		q.Close() // QMP, too, serves one client at a time
		next := e.backup("web", "--consistency", "file")
		if next.Consistency != platform.FileConsistent || !strings.Contains(strings.Join(next.Notes, "\n"), "left frozen") {
			t.Fatalf("backup after an abandoned freeze: %s, notes %q", next.Consistency, next.Notes)
		}
		// The watchdog also ran the post-scripts the vanished host would
		// have run (a file-consistent backup runs none itself).
		if post := sh("cat /root/post-mark"); post != "post test-watchdog crash-consistent" {
			t.Fatalf("post-mark after the watchdog fired: %q", post)
		}
	})

	// Restore the app-consistent point as a new VM.
	vm.Kill()
	e.mustCLI("restore", app.RecoveryPoint, "--new-vm", "web-restored", "--wait")
	var restored platform.VM
	rb, err := os.ReadFile(filepath.Join(inv, "web-restored", "vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rb, &restored); err != nil || len(restored.Disks) != 1 {
		t.Fatalf("restored vm.json %s: %v", rb, err)
	}
	rdisk := filepath.Join(inv, "web-restored", restored.Disks[0].File)
	if out, err := exec.Command("e2fsck", "-fn", rdisk).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck of the restored disk: %v\n%s", err, out)
	}
	debugfs := func(req string) string {
		out, err := exec.Command("debugfs", "-R", req, rdisk).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v: %s", req, err, out)
		}
		return string(out)
	}
	if got := debugfs("cat /root/pre-mark"); !strings.Contains(got, preMark) {
		t.Fatalf("restored pre-mark %q, want %q", got, preMark)
	}
	if got := debugfs("stat /root/post-mark"); !strings.Contains(got, "not found") {
		t.Fatalf("the post-mark, written after the snapshot, is in it: %s", got)
	}
	ls := debugfs("ls -l /root/w")
	for i := 1; i <= synced; i++ {
		if !regexp.MustCompile(fmt.Sprintf(`\sf%d\s`, i)).MatchString(ls) {
			t.Fatalf("file f%d, synced before the snapshot, is not in the restored disk", i)
		}
	}
	if got := debugfs(fmt.Sprintf("cat /root/w/f%d", synced)); !strings.Contains(got, fmt.Sprintf("file %d", synced)) {
		t.Fatalf("restored f%d reads %q", synced, got)
	}
	t.Logf("restored disk: fsck clean, %d files synced before the snapshot all present", synced)

	// The restored VM boots.
	rvm := guest.Boot(t, filepath.Join(inv, "web-restored"), guest.Options{Disk: rdisk, Format: "raw"})
	rc, err := qga.Dial(ctx, rvm.Agent)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := rc.ReadFile(ctx, "/root/pre-mark", 1<<10); err != nil || strings.TrimSpace(string(got)) != preMark {
		t.Fatalf("booted restored vm: pre-mark %q, %v", got, err)
	}
}

// probeCount is the dirty byte count of the test's probe bitmap.
func probeCount(t *testing.T, ctx context.Context, q *qmp.Client, node string) int64 {
	t.Helper()
	var nodes []struct {
		NodeName string `json:"node-name"`
		Bitmaps  []struct {
			Name  string `json:"name"`
			Count int64  `json:"count"`
		} `json:"dirty-bitmaps"`
	}
	if err := q.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.NodeName == node {
			for _, b := range n.Bitmaps {
				if b.Name == "probe" {
					return b.Count
				}
			}
		}
	}
	t.Fatalf("no probe bitmap on node %s", node)
	return 0
}
