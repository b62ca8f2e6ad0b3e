// Package qga is a small client of qemu-guest-agent, the agent inside a
// QEMU guest that answers JSON commands over a virtio-serial port
// (org.qemu.guest_agent.0) whose host side is a unix socket chardev.
//
// # Synchronization
//
// The channel is a byte stream that outlives clients: it can hold the
// answers a previous client never read, or half a command it never
// finished. So Dial (and any command after one that was interrupted) first
// sends 0xFF, which resets the agent's parser, then guest-sync-delimited
// with a random id; the agent answers it after a 0xFF sentinel, and
// everything before the answer carrying that id is discarded.
//
// Commands run one at a time (the agent serves them in order). A command's
// error names it (*Error). A context that ends during a command returns at
// once; the command may still run in the guest, and the next command
// resynchronizes first.
package qga

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// Error is an error the agent returned for a command.
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qga %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrClosed is returned for commands on a closed client.
var ErrClosed = errors.New("qga client closed")

// ErrProtocol says the agent's answer breaks the protocol (too long).
var ErrProtocol = errors.New("qga protocol error")

// maxAnswer bounds one answer line. The guest writes it, so it must be
// bounded: the largest real one is guest-exec-status with both outputs at
// the agent's 16 MiB cap, base64-encoded (about 43 MiB).
var maxAnswer = 48 << 20

// readLine reads one line of at most maxAnswer bytes.
func (c *Client) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		if len(line)+len(frag) > maxAnswer {
			return nil, fmt.Errorf("%w: an answer over %d bytes", ErrProtocol, maxAnswer)
		}
		line = append(line, frag...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// skipPast discards everything up to and including the next delim, holding
// no more than the reader's buffer.
func (c *Client) skipPast(delim byte) error {
	for {
		_, err := c.r.ReadSlice(delim)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// Client is one connection to a guest agent.
type Client struct {
	mu     sync.Mutex // one command at a time
	conn   net.Conn
	r      *bufio.Reader
	stale  bool // a command was interrupted: its answer may still come
	closed bool
}

// Dial connects to the agent's socket at path and synchronizes with the
// agent. ctx bounds the connection and the handshake; an agent that is not
// running (yet) makes Dial wait until ctx ends.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qga dial %s: %w", path, err)
	}
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if err := c.sync(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qga %s: %w", path, err)
	}
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.conn.Close()
}

// watch bounds the connection's reads and writes by ctx; the returned stop
// must be called when the exchange is over.
func (c *Client) watch(ctx context.Context) (stop func() bool) {
	dl, _ := ctx.Deadline() // zero: no deadline
	c.conn.SetDeadline(dl)
	fired := make(chan struct{})
	stopf := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)); close(fired) })
	return func() bool {
		if stopf() {
			return true
		}
		// ctx ended and the func runs: let it finish, or it would cut
		// short the next exchange's deadline.
		<-fired
		return false
	}
}

// sync runs guest-sync-delimited and discards everything up to its answer.
func (c *Client) sync(ctx context.Context) error {
	stop := c.watch(ctx)
	defer stop()
	id := rand.Int64N(1 << 53) // JSON numbers stay exact below 2^53
	req := fmt.Sprintf("\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%d}}\n", id)
	if _, err := c.conn.Write([]byte(req)); err != nil {
		return fmt.Errorf("guest-sync-delimited: %w", ctxErr(ctx, err))
	}
	for {
		if err := c.skipPast(0xff); err != nil {
			return fmt.Errorf("guest-sync-delimited: %w", ctxErr(ctx, err))
		}
		line, err := c.readLine()
		if err != nil {
			return fmt.Errorf("guest-sync-delimited: %w", ctxErr(ctx, err))
		}
		var m struct {
			Return *int64 `json:"return"`
		}
		if json.Unmarshal(line, &m) == nil && m.Return != nil && *m.Return == id {
			c.stale = false
			return nil
		}
	}
}

// Execute runs command with args (nil for none) and decodes its return
// value into result (nil to ignore it). An agent error is *Error.
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("qga %s: %w", command, ErrClosed)
	}
	if c.stale {
		if err := c.sync(ctx); err != nil {
			return fmt.Errorf("qga %s: %w", command, err)
		}
	}
	req, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, args})
	if err != nil {
		return fmt.Errorf("qga %s: %w", command, err)
	}
	stop := c.watch(ctx)
	defer stop()
	// Until the answer is read, an interruption leaves it in the channel.
	c.stale = true
	if _, err := c.conn.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("qga %s: %w", command, ctxErr(ctx, err))
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return fmt.Errorf("qga %s: %w", command, ctxErr(ctx, err))
		}
		line = bytes.TrimSpace(line)
		if i := bytes.LastIndexByte(line, 0xff); i >= 0 {
			line = line[i+1:] // a stray sync answer's sentinel
		}
		if len(line) == 0 {
			continue
		}
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("qga %s: bad answer %.100q: %w", command, line, err)
		}
		c.stale = false
		if m.Error != nil {
			return &Error{Command: command, Class: m.Error.Class, Desc: m.Error.Desc}
		}
		if result != nil && len(m.Return) > 0 {
			if err := json.Unmarshal(m.Return, result); err != nil {
				return fmt.Errorf("qga %s: decode answer: %w", command, err)
			}
		}
		return nil
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The connection's deadline is ctx's (watch), and its timer can fire a
	// moment before ctx's own: that timeout is ctx's deadline too.
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.Execute(ctx, "guest-ping", nil, nil)
}

// Info is the agent's version and the commands it knows.
type Info struct {
	Version  string `json:"version"`
	Commands []struct {
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
	} `json:"supported_commands"`
}

// Supports says whether the agent knows command and has it enabled.
func (i Info) Supports(command string) bool {
	for _, c := range i.Commands {
		if c.Name == command {
			return c.Enabled
		}
	}
	return false
}

// Info runs guest-info.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	err := c.Execute(ctx, "guest-info", nil, &i)
	return i, err
}
