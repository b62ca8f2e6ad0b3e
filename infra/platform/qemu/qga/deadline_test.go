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

// An agent that answers only the sync handshake: every call past its
// context's deadline says context.DeadlineExceeded, not the socket's own
// timeout (the connection's deadline is the context's, and its timer may
// fire a moment before the context's).
func TestDeadlineIsTheContexts(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go syncOnlyAgent(conn)
		}
	}()
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

// syncOnlyAgent answers guest-sync-delimited and nothing else.
func syncOnlyAgent(conn net.Conn) {
	defer conn.Close()
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
		if json.Unmarshal(bytes.TrimLeft(line, "\xff"), &req) != nil || req.Execute != "guest-sync-delimited" {
			continue
		}
		if _, err := fmt.Fprintf(conn, "\xff{\"return\": %d}\n", req.Arguments.ID); err != nil {
			return
		}
	}
}
