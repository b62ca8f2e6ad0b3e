package qga_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
	"github.com/vmvault/vmvault/testsuite/guest"
)

// TestGuestAgent boots the real Linux guest once and drives its agent.
func TestGuestAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a Linux guest")
	}
	vm := guest.Boot(t, t.TempDir(), guest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("StaleBytes", func(t *testing.T) {
		// A client that leaves half a command and an unread answer behind.
		conn, err := net.Dial("unix", vm.Agent)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(`{"execute":"guest-info"}` + "\n" + `{"execute":"guest-pi`))
		time.Sleep(500 * time.Millisecond)
		conn.Close()
		c, err := qga.Dial(ctx, vm.Agent)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})

	c, err := qga.Dial(ctx, vm.Agent)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	t.Run("Info", func(t *testing.T) {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"guest-exec", "guest-file-write", "guest-fsfreeze-freeze"} {
			if !info.Supports(cmd) {
				t.Errorf("agent %s does not support %s", info.Version, cmd)
			}
		}
		t.Logf("agent %s, %d commands", info.Version, len(info.Commands))
	})

	t.Run("Errors", func(t *testing.T) {
		_, err := c.FileOpen(ctx, "/no/such/dir/file", "r")
		var qe *qga.Error
		if !errors.As(err, &qe) || qe.Command != "guest-file-open" {
			t.Fatalf("open of a missing file: %v, want a *qga.Error naming guest-file-open", err)
		}
		if err := c.Execute(ctx, "guest-no-such-command", nil, nil); !errors.As(err, &qe) || qe.Command != "guest-no-such-command" {
			t.Fatalf("unknown command: %v", err)
		}
		if err := c.Ping(ctx); err != nil { // still in step
			t.Fatal(err)
		}
	})

	// 3 MiB crosses the client's 1 MiB chunks both ways.
	data := bytes.Repeat([]byte("vmvault guest file\n"), 3<<20/19)
	t.Run("Files", func(t *testing.T) {
		if err := c.WriteFile(ctx, "/root/qga-test.txt", data); err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadFile(ctx, "/root/qga-test.txt", 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, wrote %d (equal: false)", len(got), len(data))
		}
	})

	t.Run("Exec", func(t *testing.T) {
		// The guest's own tools see the file the agent wrote.
		r, err := c.Exec(ctx, qga.Command{Path: "/bin/sh", Args: []string{"-c", "wc -c < /root/qga-test.txt; cat; echo oops >&2; exit 3"}, Input: []byte("from stdin\n")})
		if err != nil {
			t.Fatal(err)
		}
		want := []byte(strconv.Itoa(len(data)) + "\nfrom stdin\n")
		if r.ExitCode != 3 || !bytes.Equal(r.Stdout, want) || string(r.Stderr) != "oops\n" {
			t.Fatalf("exec: exit %d, stdout %q, stderr %q; want exit 3, %q, \"oops\\n\"", r.ExitCode, r.Stdout, r.Stderr, want)
		}
		r, err = c.Exec(ctx, qga.Command{Path: "/bin/true"})
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("true: %+v, %v", r, err)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := c.Exec(short, qga.Command{Path: "/bin/sleep", Args: []string{"5"}}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("sleep past its context: %v, want DeadlineExceeded", err)
		}
		if err := c.Ping(ctx); err != nil { // resynchronizes after the interruption
			t.Fatal(err)
		}
	})

	t.Run("Freeze", func(t *testing.T) {
		defer c.Thaw(context.Background()) // never leave the guest frozen
		if s, err := c.FreezeStatus(ctx); err != nil || s != qga.Thawed {
			t.Fatalf("status before: %q, %v", s, err)
		}
		n, err := c.Freeze(ctx)
		if err != nil || n < 1 {
			t.Fatalf("freeze: %d file systems, %v", n, err)
		}
		if s, err := c.FreezeStatus(ctx); err != nil || s != qga.Frozen {
			t.Fatalf("status while frozen: %q, %v", s, err)
		}
		if n, err := c.Thaw(ctx); err != nil || n < 1 {
			t.Fatalf("thaw: %d file systems, %v", n, err)
		}
		if s, err := c.FreezeStatus(ctx); err != nil || s != qga.Thawed {
			t.Fatalf("status after: %q, %v", s, err)
		}
		// Writes go through again.
		if err := c.WriteFile(ctx, "/root/after-thaw", []byte("ok")); err != nil {
			t.Fatal(err)
		}
	})
}
