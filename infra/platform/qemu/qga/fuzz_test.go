package qga

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentAnswers serves conn as an agent that answers each sync correctly
// and the i-th other command with answers[i] (raw bytes, sent as they are;
// none left: the connection closes).
func agentAnswers(conn net.Conn, answers [][]byte) {
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
		json.Unmarshal(bytes.TrimLeft(line, "\xff"), &req)
		if req.Execute == "guest-sync-delimited" {
			fmt.Fprintf(conn, "\xff{\"return\": %d}\n", req.Arguments.ID)
			continue
		}
		if len(answers) == 0 {
			return
		}
		if _, err := conn.Write(answers[0]); err != nil {
			return
		}
		answers = answers[1:]
	}
}

// Real agent answers.
var agentSeeds = []string{
	`{"return": {"version": "8.2.2", "supported_commands": [{"enabled": true, "name": "guest-exec", "success-response": true}]}}` + "\n",
	`{"return": "thawed"}` + "\n",
	`{"return": 1000}` + "\n",
	`{"return": {"count": 12, "buf-b64": "aGVsbG8gd29ybGQK", "eof": true}}` + "\n",
	`{"error": {"class": "GenericError", "desc": "failed to open file '/etc/vmvault': No such file or directory"}}` + "\n",
	"\xff{\"return\": 42}\n",
}

// FuzzAgent: whatever the guest's agent answers (the guest is not to be
// trusted), every call returns within its context, an agent error names
// its command, and a file read never returns more than it allows.
func FuzzAgent(f *testing.F) {
	f.Add([]byte(strings.Join(agentSeeds, "\x00")))
	f.Add([]byte(agentSeeds[3] + "\x00" + agentSeeds[3] + "\x00" + agentSeeds[2]))
	f.Add([]byte(`{"return": {"count": 3, "buf-b64": "////", "eof": false}}` + "\n\x00" + `{"return": {"buf-b64": "", "eof": false}}` + "\n"))
	f.Add([]byte("\n\n\xff\xff{}\n\x00{\"return\":\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, cli := socketPair(t)
		go agentAnswers(srv, bytes.Split(data, []byte{0}))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		c := &Client{conn: cli, r: bufio.NewReaderSize(cli, 4096)}
		defer c.Close()
		if err := c.sync(ctx); err != nil {
			t.Fatalf("sync with a fake that answers it: %v", err)
		}
		named := func(err error, command string) {
			var qe *Error
			if errors.As(err, &qe) && qe.Command != command {
				t.Fatalf("agent error %q names %q, not %q", qe, qe.Command, command)
			}
		}
		_, err := c.Info(ctx)
		named(err, "guest-info")
		_, err = c.FreezeStatus(ctx)
		named(err, "guest-fsfreeze-status")
		got, err := c.ReadFile(ctx, "/etc/hostname", 64)
		if err == nil && len(got) > 64 {
			t.Fatalf("read %d bytes of a file allowed 64", len(got))
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("calls took %v", time.Since(start))
		}
	})
}

// An answer over maxAnswer fails that call with ErrProtocol instead of
// being buffered whole, and the next call resynchronizes and works.
func TestAnswerBound(t *testing.T) {
	old := maxAnswer
	maxAnswer = 1 << 16
	defer func() { maxAnswer = old }()
	srv, cli := socketPair(t)
	long := []byte(`{"return": "` + strings.Repeat("x", 1<<20) + `"}` + "\n")
	go agentAnswers(srv, [][]byte{long, []byte(agentSeeds[1])})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &Client{conn: cli, r: bufio.NewReaderSize(cli, 4096)}
	defer c.Close()
	if err := c.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "guest-ping") {
		t.Fatalf("a 1 MiB answer under a 64 KiB bound: %v", err)
	}
	if s, err := c.FreezeStatus(ctx); err != nil || s != Thawed {
		t.Fatalf("the call after a refused answer: %q, %v", s, err)
	}
}

// socketPair is a connected pair of unix sockets: unlike net.Pipe, a
// write goes to the kernel's buffer, as with the agent's real socket.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "agent")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}
