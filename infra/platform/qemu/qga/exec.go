package qga

import (
	"context"
	"fmt"
	"time"
)

// Command is a program to run in the guest.
type Command struct {
	Path  string   // the program; the agent looks it up in its PATH
	Args  []string // arguments after the program name
	Env   []string // NAME=value; the agent's environment when empty
	Input []byte   // standard input
}

// ExecResult is how a guest program ended and what it printed. The agent
// truncates captured output (16 MiB in current QEMU); Truncated says so.
type ExecResult struct {
	PID       int64
	ExitCode  int
	Signal    int // the signal that ended it, 0 when it exited
	Stdout    []byte
	Stderr    []byte
	Truncated bool
}

// pollEvery is how often Exec asks whether a program ended.
const pollEvery = 100 * time.Millisecond

// Exec runs cmd in the guest with guest-exec, capturing its output, and
// polls guest-exec-status until it ends or ctx does. The agent cannot kill
// a program, so when ctx ends first the program keeps running in the guest.
func (c *Client) Exec(ctx context.Context, cmd Command) (ExecResult, error) {
	args := map[string]any{"path": cmd.Path, "capture-output": true}
	if len(cmd.Args) > 0 {
		args["arg"] = cmd.Args
	}
	if len(cmd.Env) > 0 {
		args["env"] = cmd.Env
	}
	if cmd.Input != nil {
		args["input-data"] = cmd.Input // []byte marshals as base64
	}
	var started struct {
		PID int64 `json:"pid"`
	}
	if err := c.Execute(ctx, "guest-exec", args, &started); err != nil {
		return ExecResult{}, fmt.Errorf("run %s: %w", cmd.Path, err)
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		var s struct {
			Exited       bool   `json:"exited"`
			ExitCode     int    `json:"exitcode"`
			Signal       int    `json:"signal"`
			Out          []byte `json:"out-data"`
			Err          []byte `json:"err-data"`
			OutTruncated bool   `json:"out-truncated"`
			ErrTruncated bool   `json:"err-truncated"`
		}
		if err := c.Execute(ctx, "guest-exec-status", map[string]any{"pid": started.PID}, &s); err != nil {
			return ExecResult{PID: started.PID}, fmt.Errorf("run %s (pid %d): %w", cmd.Path, started.PID, err)
		}
		if s.Exited {
			return ExecResult{PID: started.PID, ExitCode: s.ExitCode, Signal: s.Signal,
				Stdout: s.Out, Stderr: s.Err, Truncated: s.OutTruncated || s.ErrTruncated}, nil
		}
		select {
		case <-ctx.Done():
			return ExecResult{PID: started.PID}, fmt.Errorf("run %s (pid %d): still running in the guest: %w", cmd.Path, started.PID, ctx.Err())
		case <-t.C:
		}
	}
}

// Spawn starts cmd in the guest without capturing its output and returns
// its pid at once: for programs that outlive the call (a guest-exec whose
// output is captured is not reported ended while a child holds its pipes).
func (c *Client) Spawn(ctx context.Context, cmd Command) (int64, error) {
	args := map[string]any{"path": cmd.Path}
	if len(cmd.Args) > 0 {
		args["arg"] = cmd.Args
	}
	if len(cmd.Env) > 0 {
		args["env"] = cmd.Env
	}
	var started struct {
		PID int64 `json:"pid"`
	}
	if err := c.Execute(ctx, "guest-exec", args, &started); err != nil {
		return 0, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return started.PID, nil
}
