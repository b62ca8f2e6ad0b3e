package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/guestext"
	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
)

// Quiescing bounds. Variables so that tests can shorten them.
var (
	// agentTimeout bounds reaching the guest agent: a QEMU whose guest runs
	// no agent accepts the connection and never answers.
	agentTimeout = 10 * time.Second
	// scriptTimeout is each pre- or post-script's limit in the guest;
	// scriptsTimeout bounds a whole run of them from the host.
	scriptTimeout  = 60 * time.Second
	scriptsTimeout = 3 * time.Minute
	// freezeTimeout bounds the freeze call (the guest flushes first).
	freezeTimeout = 30 * time.Second
	// watchdogAfter is when the guest thaws itself if the host has not:
	// no freeze outlives it, whatever happens to the worker.
	watchdogAfter = 60 * time.Second
)

// dialAgent connects to the VM's guest agent, or says why it cannot
// (platform.ErrAgentUnavailable).
func dialAgent(ctx context.Context, name string, s Settings) (*qga.Client, error) {
	st, err := os.Lstat(s.AgentSocket)
	if err != nil || st.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("vm %q: no guest agent socket at %s (add a virtserialport named org.qemu.guest_agent.0): %w", name, s.AgentSocket, platform.ErrAgentUnavailable)
	}
	dctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	c, err := qga.Dial(dctx, s.AgentSocket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		why := err.Error()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			why = fmt.Sprintf("no answer within %s (is qemu-guest-agent running in the guest?)", agentTimeout)
		}
		return nil, fmt.Errorf("vm %q: guest agent %s: %s: %w", name, s.AgentSocket, why, platform.ErrAgentUnavailable)
	}
	return c, nil
}

// InstallExtension checks the backup extension in a running VM and installs
// or upgrades it through the guest agent. Windows guests have no scripts:
// their agent's freeze is a VSS snapshot, so the agent is the extension.
func (p *qemuPlatform) InstallExtension(ctx context.Context, name string) (platform.ExtensionStatus, error) {
	vm, s, err := p.describe(ctx, name)
	if err != nil {
		return platform.ExtensionStatus{}, err
	}
	if vm.Power != platform.PowerRunning {
		return platform.ExtensionStatus{}, fmt.Errorf("install extension in vm %q: the vm is stopped: %w", name, platform.ErrAgentUnavailable)
	}
	c, err := dialAgent(ctx, name, s)
	if err != nil {
		return platform.ExtensionStatus{}, err
	}
	defer c.Close()
	var notes []string
	if n := thawLeftover(ctx, c); n != "" {
		notes = append(notes, n)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return platform.ExtensionStatus{}, fmt.Errorf("vm %q: guest agent: %w", name, err)
	}
	for _, cmd := range []string{"guest-fsfreeze-freeze", "guest-fsfreeze-thaw", "guest-exec", "guest-file-write"} {
		if vm.OS == platform.OSWindows && (cmd == "guest-exec" || cmd == "guest-file-write") {
			continue
		}
		if !info.Supports(cmd) {
			return platform.ExtensionStatus{}, fmt.Errorf("vm %q: guest agent %s has %s disabled or missing: %w", name, info.Version, cmd, platform.ErrAgentUnavailable)
		}
	}
	if vm.OS == platform.OSWindows {
		return platform.ExtensionStatus{Installed: true, Healthy: true, Version: "qga " + info.Version + " (VSS)", Notes: notes}, nil
	}
	st, err := guestext.Ensure(ctx, c)
	if err != nil {
		return platform.ExtensionStatus{}, fmt.Errorf("vm %q: %w", name, err)
	}
	if st.Action != "" {
		notes = append(notes, fmt.Sprintf("backup extension %d %s", st.Version, st.Action))
	}
	return platform.ExtensionStatus{Installed: true, Healthy: true, Version: fmt.Sprint(st.Version), Notes: notes}, nil
}

// thawLeftover thaws a guest an earlier job left frozen (its worker died
// between freeze and thaw, and the guest's watchdog thawed the file
// systems but not the agent's state, which refuses most commands until a
// thaw); it returns a note when it did.
func thawLeftover(ctx context.Context, c *qga.Client) string {
	st, err := c.FreezeStatus(ctx)
	if err != nil || st != qga.Frozen {
		return ""
	}
	n, err := c.Thaw(ctx)
	if err != nil {
		return fmt.Sprintf("the guest agent says the file systems are frozen (left by an earlier job); thaw failed: %v", err)
	}
	return fmt.Sprintf("the guest's file systems were left frozen by an earlier job (its worker stopped between freeze and thaw): thawed %d", n)
}

// quiescer takes a running guest through pre-scripts, freeze, thaw and
// post-scripts around the point-in-time capture. It never fails the
// snapshot: what does not work lowers the consistency and becomes a note.
type quiescer struct {
	c       *qga.Client // nil: crash-consistent, the guest is not touched
	vm      string
	snap    string // the snapshot id, for the scripts
	watch   string // the watchdog's id, unique per attempt
	want    platform.Consistency
	windows bool

	preRan   bool
	pre      guestext.Scripts
	armed    bool
	frozen   bool // frozen now
	froze    bool // a freeze succeeded and held until the thaw
	frozenAt time.Time
	held     time.Duration
	notes    []string
}

func (q *quiescer) note(format string, args ...any) {
	q.notes = append(q.notes, fmt.Sprintf(format, args...))
}

// startQuiesce reaches the guest agent, thaws a freeze an earlier attempt
// left, runs the pre-scripts (app-consistency) and arms the watchdog.
func (p *qemuPlatform) startQuiesce(ctx context.Context, vm platform.VM, s Settings, req platform.SnapshotRequest) *quiescer {
	q := &quiescer{vm: vm.Name, snap: req.ID, want: req.Consistency, windows: vm.OS == platform.OSWindows,
		watch: fmt.Sprintf("%s-%d", snapHash(vm.Name, req.ID), time.Now().UnixNano())}
	if req.Consistency == platform.CrashConsistent || req.Consistency == "" {
		q.note("crash-consistent: the guest is not quiesced")
		return q
	}
	c, err := dialAgent(ctx, vm.Name, s)
	if err != nil {
		q.note("guest agent unavailable (%v): crash-consistent", err)
		return q
	}
	if n := thawLeftover(ctx, c); n != "" {
		q.note("%s", n)
	}
	// The extension was checked (installed, upgraded) by InstallExtension
	// just before; if it has gone since, Arm fails below and says so.
	if !q.windows {
		if q.want == platform.AppConsistent {
			sctx, cancel := context.WithTimeout(ctx, scriptsTimeout)
			q.pre, err = guestext.Pre(sctx, c, req.ID, scriptTimeout)
			cancel()
			q.preRan = true
			if err != nil {
				q.pre.OK = false
				q.note("pre-scripts: %v", err)
			}
			for _, l := range q.pre.Lines {
				q.note("pre-script %s", l)
			}
		}
		if err := guestext.Arm(ctx, c, q.watch, watchdogAfter, q.preRan); err != nil {
			q.note("cannot start the thaw watchdog in the guest (%v): not freezing; crash-consistent", err)
			q.c = c
			q.end(ctx)
			q.close()
			q.c = nil
			return q
		}
		q.armed = true
	}
	q.c = c
	return q
}

// freeze freezes the guest's file systems just before the capture.
func (q *quiescer) freeze(ctx context.Context) {
	if q.c == nil {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, freezeTimeout)
	defer cancel()
	q.frozenAt = time.Now()
	n, err := q.c.Freeze(fctx)
	// A freeze that failed or timed out may have frozen some: thaw is due either way.
	q.frozen = true
	if err != nil {
		q.note("freeze failed (%v): crash-consistent", err)
		return
	}
	q.froze = true
	if n == 0 {
		q.froze = false
		q.note("the guest agent froze no file system: crash-consistent")
	}
}

// thaw thaws right after the capture, also when the capture failed or ctx
// ended; if the agent cannot be told, the guest's watchdog thaws it.
func (q *quiescer) thaw(ctx context.Context) {
	if !q.frozen {
		return
	}
	q.frozen = false
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var err error
	for i := 0; i < 3; i++ {
		if _, err = q.c.Thaw(tctx); err == nil {
			break
		}
	}
	q.held = time.Since(q.frozenAt)
	if err != nil {
		q.froze = false
		q.note("thaw failed (%v): the guest's watchdog thaws it within %s", err, watchdogAfter)
	}
}

// end thaws if needed, disarms the watchdog and runs the post-scripts.
func (q *quiescer) end(ctx context.Context) {
	if q.c == nil {
		return
	}
	q.thaw(ctx)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), scriptsTimeout)
	defer cancel()
	if q.armed {
		q.armed = false
		fired, err := guestext.Disarm(ctx, q.c, q.watch)
		switch {
		case err != nil:
			q.note("disarm the thaw watchdog: %v", err)
		case fired:
			q.froze = false
			q.note("the freeze lasted past the watchdog's %s and the guest thawed itself (and ran the post-scripts): crash-consistent", watchdogAfter)
			q.preRan = false
		}
	}
	if q.preRan {
		post, err := guestext.Post(ctx, q.c, q.snap, q.consistency().String(), scriptTimeout)
		if err != nil {
			q.note("post-scripts: %v", err)
		}
		for _, l := range post.Lines {
			q.note("post-script %s", l)
		}
	}
}

// consistency is what the snapshot achieved.
func (q *quiescer) consistency() platform.Consistency {
	switch {
	case q.c == nil || !q.froze:
		return platform.CrashConsistent
	case q.want == platform.AppConsistent && (q.windows || q.pre.OK):
		return platform.AppConsistent
	}
	return platform.FileConsistent
}

// summary says what the snapshot's consistency rests on.
func (q *quiescer) summary() string {
	c := q.consistency()
	switch {
	case c == platform.AppConsistent && q.windows:
		return fmt.Sprintf("app-consistent: VSS through the guest agent (frozen %s)", q.held.Round(time.Millisecond))
	case c == platform.AppConsistent:
		return fmt.Sprintf("app-consistent: pre-scripts succeeded, file systems frozen for %s", q.held.Round(time.Millisecond))
	case c == platform.FileConsistent && q.want == platform.AppConsistent && q.pre.None:
		return fmt.Sprintf("file-consistent: file systems frozen for %s; no pre-scripts in %s", q.held.Round(time.Millisecond), guestext.PreDir)
	case c == platform.FileConsistent && q.want == platform.AppConsistent:
		return fmt.Sprintf("file-consistent: file systems frozen for %s; pre-scripts failed (%s)", q.held.Round(time.Millisecond), strings.TrimSpace(q.pre.Failure()))
	case c == platform.FileConsistent:
		return fmt.Sprintf("file-consistent: file systems frozen for %s", q.held.Round(time.Millisecond))
	}
	return platform.CrashConsistent.String()
}

func (q *quiescer) close() {
	if q.c != nil {
		q.c.Close()
	}
}
