package qga_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qga"
)

// TestSyncDiscardsStaleAnswers: a channel holding a previous client's
// answers (and a previous sync's) is read past until this client's sync.
func TestSyncDiscardsStaleAnswers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		// Stale: an old answer and an old sync's answer with its sentinel.
		conn.Write([]byte("{\"return\": {\"version\": \"old\"}}\n\xff{\"return\": 7}\n"))
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			line = bytes.TrimLeft(line, "\xff")
			var req struct {
				Execute   string `json:"execute"`
				Arguments struct {
					ID int64 `json:"id"`
				} `json:"arguments"`
			}
			json.Unmarshal(line, &req)
			switch req.Execute {
			case "guest-sync-delimited":
				fmt.Fprintf(conn, "\xff{\"return\": %d}\n", req.Arguments.ID)
			case "guest-info":
				conn.Write([]byte(`{"return": {"version": "new", "supported_commands": [{"name": "guest-exec", "enabled": true}]}}` + "\n"))
			default:
				conn.Write([]byte(`{"error": {"class": "CommandNotFound", "desc": "The command ` + req.Execute + ` has not been found"}}` + "\n"))
			}
		}
	}()
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
