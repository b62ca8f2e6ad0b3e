// Package guestext is vmvault's backup extension inside a Linux guest, and
// its host side: installing and upgrading it through the QEMU guest agent,
// running the guest's pre- and post-scripts, and the watchdog that thaws
// the guest's file systems when a freeze outlives its job.
//
// The extension is one POSIX shell script (vmvault-ext.sh, embedded here)
// installed as /var/lib/vmvault/ext/vmvault-ext. It owns two folders,
// /etc/vmvault/pre.d and /etc/vmvault/post.d, where the guest's owner puts
// executable scripts (flush a database, stop a queue; then resume it). The
// host reads the installed version on every backup and installs the
// embedded one when the guest's is older or missing; a newer one (a newer
// worker installed it) is left alone.
//
// A freeze must never outlive its job, even when the worker dies between
// freeze and thaw: before freezing, the host starts the watchdog in the
// guest (Arm), which thaws every file system after a bound unless Disarm
// comes first. The guest agent refuses guest-exec while it believes the
// guest frozen, so the watchdog is started before the freeze and disarmed
// after the thaw.
package guestext

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
)

//go:embed vmvault-ext.sh
var script []byte

// Where the extension lives in the guest.
const (
	Dir     = "/var/lib/vmvault/ext"
	Path    = Dir + "/vmvault-ext"
	PreDir  = "/etc/vmvault/pre.d"
	PostDir = "/etc/vmvault/post.d"
)

// Version is the embedded extension's version (VERSION= in the script).
var Version = func() int {
	for _, line := range strings.Split(string(script), "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION="); ok {
			n, err := strconv.Atoi(v)
			if err == nil {
				return n
			}
		}
	}
	panic("guestext: vmvault-ext.sh has no VERSION=")
}()

// Status is the extension's state in a guest after Ensure.
type Status struct {
	Version int
	// Action is what Ensure did: "" (it was current), "installed",
	// "upgraded from N" or "kept newer N".
	Action string
}

// Installed returns the version installed in the guest, 0 when none (or
// when the installed one does not run).
func Installed(ctx context.Context, c *qga.Client) (int, error) {
	r, err := c.Exec(ctx, qga.Command{Path: Path, Args: []string{"version"}})
	var qe *qga.Error
	if errors.As(err, &qe) {
		return 0, nil // the agent could not start it: not installed
	}
	if err != nil {
		return 0, err
	}
	v, perr := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
	if r.ExitCode != 0 || perr != nil {
		return 0, nil
	}
	return v, nil
}

// Ensure checks the guest's extension and installs the embedded one when
// the guest's is missing or older.
func Ensure(ctx context.Context, c *qga.Client) (Status, error) {
	have, err := Installed(ctx, c)
	if err != nil {
		return Status{}, fmt.Errorf("backup extension: check version: %w", err)
	}
	switch {
	case have == Version:
		return Status{Version: have}, nil
	case have > Version:
		return Status{Version: have, Action: fmt.Sprintf("kept newer %d", have)}, nil
	}
	if err := install(ctx, c); err != nil {
		return Status{}, fmt.Errorf("backup extension: install version %d: %w", Version, err)
	}
	now, err := Installed(ctx, c)
	if err != nil {
		return Status{}, fmt.Errorf("backup extension: check version after install: %w", err)
	}
	if now != Version {
		return Status{}, fmt.Errorf("backup extension: installed version %d but %s reports %d", Version, Path, now)
	}
	st := Status{Version: now, Action: "installed"}
	if have > 0 {
		st.Action = fmt.Sprintf("upgraded from %d", have)
	}
	return st, nil
}

// install writes the script beside its place and renames it there, so a
// guest never runs half a script.
func install(ctx context.Context, c *qga.Client) error {
	if err := run(ctx, c, "mkdir", "-p", "-m", "0755", Dir, PreDir, PostDir); err != nil {
		return err
	}
	tmp := Dir + "/.vmvault-ext.new"
	if err := c.WriteFile(ctx, tmp, script); err != nil {
		return err
	}
	if err := run(ctx, c, "chmod", "0755", tmp); err != nil {
		return err
	}
	return run(ctx, c, "mv", "-f", tmp, Path)
}

// run runs a guest program and fails unless it exits 0.
func run(ctx context.Context, c *qga.Client, path string, args ...string) error {
	r, err := c.Exec(ctx, qga.Command{Path: path, Args: args})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 || r.Signal != 0 {
		return fmt.Errorf("%s %s: exit %d: %s", path, strings.Join(args, " "), r.ExitCode, bytes.TrimSpace(r.Stderr))
	}
	return nil
}

// Scripts is what one run of pre- or post-scripts did.
type Scripts struct {
	// OK: every script succeeded and there was at least one.
	OK bool
	// None: there were no scripts.
	None bool
	// Lines has one line per script ("ok 10-db", "fail 20-queue exit 1: …").
	Lines []string
}

// Failure is the first line that is not "ok …", for notes.
func (s Scripts) Failure() string {
	for _, l := range s.Lines {
		if !strings.HasPrefix(l, "ok ") {
			return l
		}
	}
	return ""
}

// Pre runs the guest's pre-scripts; each may take timeout, and the whole
// run is bounded by ctx.
func Pre(ctx context.Context, c *qga.Client, snapshot string, timeout time.Duration) (Scripts, error) {
	return scripts(ctx, c, timeout, "pre", snapshot)
}

// Post runs the guest's post-scripts with the snapshot's consistency.
func Post(ctx context.Context, c *qga.Client, snapshot, consistency string, timeout time.Duration) (Scripts, error) {
	return scripts(ctx, c, timeout, "post", snapshot, consistency)
}

func scripts(ctx context.Context, c *qga.Client, timeout time.Duration, args ...string) (Scripts, error) {
	secs := max(1, int(timeout/time.Second))
	r, err := c.Exec(ctx, qga.Command{Path: Path, Args: args, Env: []string{
		"VMVAULT_SCRIPT_TIMEOUT=" + strconv.Itoa(secs), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	}})
	if err != nil {
		return Scripts{}, fmt.Errorf("%s-scripts: %w", args[0], err)
	}
	s := Scripts{OK: r.ExitCode == 0, None: r.ExitCode == 3}
	for _, l := range strings.Split(strings.TrimSpace(string(r.Stdout)), "\n") {
		if l != "" {
			s.Lines = append(s.Lines, l)
		}
	}
	if r.ExitCode != 0 && r.ExitCode != 1 && r.ExitCode != 3 {
		return s, fmt.Errorf("%s-scripts: %s exit %d: %s", args[0], Path, r.ExitCode, bytes.TrimSpace(r.Stderr))
	}
	return s, nil
}

// armWait bounds how long Arm waits for the watchdog to say it is armed.
const armWait = 15 * time.Second

// Arm starts the watchdog and returns once it is armed: unless Disarm(id)
// comes within after, the guest thaws every file system by itself and,
// with post, runs the post-scripts (what the pre-scripts paused must not
// stay paused because the host is gone). A freeze must not start before
// the watchdog has loaded what it runs (the guest cannot read new programs
// while a freeze is being set up).
func Arm(ctx context.Context, c *qga.Client, id string, after time.Duration, post bool) error {
	args := []string{"watchdog", id, strconv.Itoa(max(1, int(after/time.Second)))}
	if post {
		args = append(args, "post")
	}
	if _, err := c.Spawn(ctx, qga.Command{Path: Path, Args: args}); err != nil {
		return err
	}
	deadline := time.Now().Add(armWait)
	for {
		b, err := c.ReadFile(ctx, stateFreeze, 256)
		if err == nil && strings.TrimSpace(string(b)) == id {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thaw watchdog %s: not armed after %s (%s: %v)", id, armWait, stateFreeze, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stateFreeze holds the armed watchdog's id (tmpfs: never frozen).
const stateFreeze = "/run/vmvault/freeze"

// Disarm stops the watchdog id; fired says it thawed the guest first (the
// freeze may not have held until the thaw, and the watchdog ran the
// post-scripts if it was armed with post).
func Disarm(ctx context.Context, c *qga.Client, id string) (fired bool, err error) {
	r, err := c.Exec(ctx, qga.Command{Path: Path, Args: []string{"disarm", id}})
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(r.Stdout)) == "fired", nil
}
