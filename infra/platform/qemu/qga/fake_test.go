package qga_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
)

// fakeAgent serves an agent on a unix socket and returns its path: each
// connection first gets stale, then every guest-sync-delimited is answered
// and every other command gets answer(command), or nothing if that is "".
func fakeAgent(t *testing.T, stale string, answer func(command string) string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serveFake(conn, stale, answer)
		}
	}()
	return sock
}

func serveFake(conn net.Conn, stale string, answer func(string) string) {
	defer conn.Close()
	conn.Write([]byte(stale))
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req struct {
			Execute   string `json:"execute"`
			Arguments struct {
				ID int64 `json:"id"`
			} `json:"arguments"`
		}
		json.Unmarshal(bytes.TrimLeft(line, "\xff"), &req)
		if req.Execute == "guest-sync-delimited" {
			fmt.Fprintf(conn, "\xff{\"return\": %d}\n", req.Arguments.ID)
		} else if a := answer(req.Execute); a != "" {
			conn.Write([]byte(a + "\n"))
		}
	}
}

// TestSyncDiscardsStaleAnswers: a channel holding a previous client's
// answers (and a previous sync's) is read past until this client's sync.
func TestSyncDiscardsStaleAnswers(t *testing.T) {
	// Stale: an old answer and an old sync's answer with its sentinel.
	sock := fakeAgent(t, "{\"return\": {\"version\": \"old\"}}\n\xff{\"return\": 7}\n", func(command string) string {
		if command == "guest-info" {
			return `{"return": {"version": "new", "supported_commands": [{"name": "guest-exec", "enabled": true}]}}`
		}
		return `{"error": {"class": "CommandNotFound", "desc": "The command ` + command + ` has not been found"}}`
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := qga.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil || info.Version != "new" || !info.Supports("guest-exec") || info.Supports("guest-ping") {
		t.Fatalf("info: %+v, %v", info, err)
	}
	err = c.Ping(ctx)
	if qe, ok := err.(*qga.Error); !ok || qe.Command != "guest-ping" || qe.Class != "CommandNotFound" {
		t.Fatalf("ping on an agent without it: %v", err)
	}
}

// An agent that answers only the sync handshake: every call past its
// context's deadline says context.DeadlineExceeded, not the socket's own
// timeout (the connection's deadline is the context's, and its timer may
// fire a moment before the context's).
func TestDeadlineIsTheContexts(t *testing.T) {
	sock := fakeAgent(t, "", func(string) string { return "" })
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	c, err := qga.Dial(dctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%5)*time.Millisecond)
		err := c.Ping(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want context.DeadlineExceeded", i, err)
		}
	}
}
