package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Real QEMU output: the greeting, answers, an error and an event.
const (
	greeting  = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": "Debian 1:8.2.2+ds-0ubuntu1"}, "capabilities": ["oob"]}}` + "\r\n"
	capsOK    = `{"return": {}, "id": "caps"}` + "\r\n"
	statusOK  = `{"return": {"status": "running", "singlestep": false, "running": true}, "id": "vmvault-1"}` + "\r\n"
	cmdError  = `{"id": "vmvault-1", "error": {"class": "GenericError", "desc": "Node 'disk-os' not found"}}` + "\r\n"
	jobEvent  = `{"timestamp": {"seconds": 1732230000, "microseconds": 123456}, "event": "BLOCK_JOB_COMPLETED", "data": {"device": "fleece-os", "len": 67108864, "offset": 67108864, "speed": 0, "type": "backup"}}` + "\r\n"
	fuzzLimit = 2 * time.Second
)

// FuzzConversation: whatever a peer on the QMP socket sends, the client
// returns (no panic, no hang past its context), a failed handshake is an
// error, and a command gets an answer, a *Error or an error.
func FuzzConversation(f *testing.F) {
	f.Add([]byte(greeting + capsOK + statusOK))
	f.Add([]byte(greeting + capsOK + jobEvent + cmdError))
	f.Add([]byte(greeting + jobEvent + capsOK + `{"return": [1, 2], "id": "vmvault-1"}`))
	f.Add([]byte(greeting + `{"error": {"class": "CommandNotFound", "desc": "no"}}`))
	f.Add([]byte(`{"hello": "world"}`))
	f.Add([]byte(greeting + capsOK + `{"return": {}, "id": 1}{"return": "x", "id": "vmvault-1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, cli := net.Pipe()
		go io.Copy(io.Discard, srv)
		go func() { srv.Write(data); srv.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), fuzzLimit)
		defer cancel()
		start := time.Now()
		c, err := newClient(ctx, cli)
		if err != nil {
			cli.Close()
			if time.Since(start) > fuzzLimit+time.Second {
				t.Fatalf("handshake took %v", time.Since(start))
			}
			return
		}
		defer c.Close()
		var status struct {
			Status string `json:"status"`
		}
		err = c.Execute(ctx, "query-status", nil, &status)
		var qe *Error
		if errors.As(err, &qe) && (qe.Command != "query-status" || !strings.HasPrefix(qe.Error(), "qmp query-status: ")) {
			t.Fatalf("QEMU error %q does not name the command", qe.Error())
		}
		if time.Since(start) > fuzzLimit+time.Second {
			t.Fatalf("conversation took %v", time.Since(start))
		}
	})
}

// FuzzDecoder: the message reader yields only JSON values no larger than
// MaxMessage, then an error; it never loops without reading.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(greeting + capsOK + jobEvent + statusOK + cmdError))
	f.Add([]byte(`{"return": "` + strings.Repeat("A", 1000) + `"}` + "\n{"))
	f.Add([]byte("\xff\xfe{}[]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			raw, err := d.next()
			if err != nil {
				return
			}
			if len(raw) > MaxMessage || !json.Valid(raw) {
				t.Fatalf("message %d: %d bytes, valid %v", i, len(raw), json.Valid(raw))
			}
			if i > len(data) {
				t.Fatalf("%d messages from %d bytes", i, len(data))
			}
		}
	})
}

// A message that never ends is refused once it passes MaxMessage, having
// read little more than that: the client does not buffer what a peer
// sends without bound.
func TestMessageBound(t *testing.T) {
	endless := &countingReader{r: io.MultiReader(strings.NewReader(`{"return": "`), zeros{})}
	d := newDecoder(endless)
	_, err := d.next()
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "over 8388608 bytes") {
		t.Fatalf("endless message: %v", err)
	}
	if endless.n > MaxMessage+1<<20 {
		t.Fatalf("read %d bytes of an endless message", endless.n)
	}
	// Messages just under the bound pass, one after the other.
	big := `{"return": "` + strings.Repeat("a", MaxMessage-20) + `"}`
	d = newDecoder(strings.NewReader(big + big))
	for i := 0; i < 2; i++ {
		if raw, err := d.next(); err != nil || len(raw) != len(big) {
			t.Fatalf("message %d under the bound: %d bytes, %v", i, len(raw), err)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'A'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
