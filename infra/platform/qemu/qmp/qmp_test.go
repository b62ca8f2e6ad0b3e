package qmp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qemutest"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

// fakeQEMU serves one QMP connection: greeting, capabilities, then answers
// query-status, fails anything else, and sends an event before each answer.
// Answers to two commands in flight come back in reverse order.
func fakeQEMU(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		w := json.NewEncoder(c)
		w.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 9, "minor": 1, "micro": 2}, "package": "fake"}, "capabilities": []string{}}})
		sc := bufio.NewScanner(c)
		var held []map[string]any
		for sc.Scan() {
			var req struct {
				Execute string          `json:"execute"`
				ID      json.RawMessage `json:"id"`
			}
			json.Unmarshal(sc.Bytes(), &req)
			w.Encode(map[string]any{"event": "STOP", "timestamp": map[string]int{"seconds": 1}})
			var ans map[string]any
			switch req.Execute {
			case "qmp_capabilities":
				ans = map[string]any{"return": map[string]any{}, "id": req.ID}
			case "query-status":
				ans = map[string]any{"return": map[string]any{"status": "running", "running": true}, "id": req.ID}
			case "hold":
				held = append(held, map[string]any{"return": map[string]any{"status": "held"}, "id": req.ID})
				continue
			case "release":
				w.Encode(map[string]any{"return": map[string]any{"status": "released"}, "id": req.ID})
				for _, h := range held {
					w.Encode(h)
				}
				held = nil
				continue
			case "quit":
				return
			default:
				ans = map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": "The command " + req.Execute + " has not been found"}, "id": req.ID}
			}
			w.Encode(ans)
		}
	}()
	return sock
}

func TestFakeServer(t *testing.T) {
	ctx := context.Background()
	c, err := qmp.Dial(ctx, fakeQEMU(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.Version(); v.Major != 9 || v.Minor != 1 || v.Package != "fake" {
		t.Errorf("version %+v", v)
	}
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "running" || !st.Running {
		t.Fatalf("query-status: %+v, %v", st, err)
	}
	err = c.Execute(ctx, "no-such-command", map[string]int{"x": 1}, nil)
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || !strings.Contains(err.Error(), "no-such-command") {
		t.Fatalf("unknown command: %v", err)
	}
	// Two commands in flight, answered out of order, each get their own answer.
	held := make(chan error, 1)
	var hs struct{ Status string }
	go func() { held <- c.Execute(ctx, "hold", nil, &hs) }()
	time.Sleep(50 * time.Millisecond)
	var rs struct{ Status string }
	if err := c.Execute(ctx, "release", nil, &rs); err != nil || rs.Status != "released" {
		t.Fatalf("release: %+v %v", rs, err)
	}
	if err := <-held; err != nil || hs.Status != "held" {
		t.Fatalf("held: %+v %v", hs, err)
	}
	select {
	case ev := <-c.Events():
		if ev.Name != "STOP" {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(time.Second):
		t.Error("no event delivered")
	}
	// A command canceled by its context returns at once.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := c.Execute(cctx, "hold", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("canceled command: %v", err)
	}
	// The server going away fails commands with ErrClosed.
	c.Execute(ctx, "quit", nil, nil)
	<-c.Done()
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, qmp.ErrClosed) {
		t.Errorf("after the server left: %v", err)
	}
}

func TestNotQMP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, _ := l.Accept()
		if c != nil {
			c.Write([]byte("NBDMAGIC"))
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if c, err := qmp.Dial(ctx, sock); err == nil {
		c.Close()
		t.Fatal("Dial of a socket that is not QMP succeeded")
	} else {
		t.Log(err)
	}
}

func TestRealQEMU(t *testing.T) {
	p := qemutest.Start(t, t.TempDir(), "-machine", "none")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, p.QMP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("QEMU %+v, accel %s", c.Version(), qemutest.Accel(t))
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status == "" {
		t.Errorf("query-status: %+v", st)
	}
	err = c.Execute(ctx, "block-dirty-bitmap-add", map[string]any{"node": "no-such-node", "name": "b"}, nil)
	var qe *qmp.Error
	if !errors.As(err, &qe) || !strings.Contains(err.Error(), "block-dirty-bitmap-add") {
		t.Fatalf("bad command: %v", err)
	}
	t.Logf("error: %v", err)
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-c.Events():
		if ev.Name != "STOP" {
			t.Errorf("event %q, want STOP", ev.Name)
		}
	case <-time.After(5 * time.Second):
		t.Error("no STOP event")
	}
	if err := c.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, qmp.ErrClosed) {
		t.Fatal(err)
	}
	if !p.Wait(5 * time.Second) {
		t.Error("qemu did not quit")
	}
}
