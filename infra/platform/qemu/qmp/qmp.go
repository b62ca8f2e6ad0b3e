// Package qmp is a small client of the QEMU Machine Protocol over a unix
// socket: it reads the greeting, leaves capabilities negotiation mode and
// runs commands, each with its own id, so several goroutines may run
// commands at once. Asynchronous events are delivered to Events (dropped
// when nobody reads them). A command's error comes back as *Error naming
// the command.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Error is an error QEMU returned for a command.
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrClosed is returned for commands on a closed connection, or whose
// answer was lost because the connection closed.
var ErrClosed = errors.New("qmp connection closed")

// ErrProtocol says the peer does not speak QMP: no greeting, a message
// that is not JSON, or one larger than MaxMessage. Retrying does not help.
var ErrProtocol = errors.New("not a QMP conversation")

// MaxMessage bounds one message from QEMU. The largest QEMU sends
// (query-qmp-schema) is a few hundred KiB; without a bound a peer that
// never ends a message would make the client buffer it all.
const MaxMessage = 8 << 20

// boundedReader fails a read once more than MaxMessage bytes arrived since
// the last complete message (reset). The decoder reads ahead, so one
// message may take up to MaxMessage plus its buffer: memory stays bounded.
type boundedReader struct {
	r    io.Reader
	left int
}

func (b *boundedReader) reset() { b.left = MaxMessage }

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w: a message over %d bytes", ErrProtocol, MaxMessage)
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= n
	return n, err
}

// decoder reads one QMP message at a time, within MaxMessage.
type decoder struct {
	br  *boundedReader
	dec *json.Decoder
}

func newDecoder(r io.Reader) *decoder {
	br := &boundedReader{r: r}
	br.reset()
	return &decoder{br: br, dec: json.NewDecoder(br)}
}

// next reads the next message; a message that is not JSON is ErrProtocol.
func (d *decoder) next() (json.RawMessage, error) {
	var raw json.RawMessage
	err := d.dec.Decode(&raw)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syn) || errors.As(err, &typ) {
		err = fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if err == nil {
		d.br.reset()
	}
	return raw, err
}

func (d *decoder) decode(m *message) error {
	raw, err := d.next()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, m); err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return nil
}

// Event is an asynchronous QMP event.
type Event struct {
	Name      string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Version is QEMU's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

type message struct {
	QMP *struct {
		Version struct {
			Qemu struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
	} `json:"QMP,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error,omitempty"`
	Event string          `json:"event,omitempty"`
	ID    json.RawMessage `json:"id,omitempty"`
}

type reply struct {
	ret json.RawMessage
	err *Error
}

// Client is one QMP connection.
type Client struct {
	conn    net.Conn
	version Version
	events  chan Event
	wmu     sync.Mutex // serializes writes
	mu      sync.Mutex
	pending map[string]chan reply
	closed  bool
	readErr error
	done    chan struct{}
	next    atomic.Uint64
}

// Dial connects to the QMP socket at path, reads the greeting and runs
// qmp_capabilities. ctx bounds the handshake only.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	c, err := newClient(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	return c, nil
}

func newClient(ctx context.Context, conn net.Conn) (*Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(dl)
	} else {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	dec := newDecoder(bufio.NewReaderSize(conn, 64<<10))
	var greet message
	if err := dec.decode(&greet); err != nil {
		stop()
		return nil, fmt.Errorf("read greeting: %w", ctxErr(ctx, err))
	}
	if greet.QMP == nil {
		stop()
		return nil, fmt.Errorf("%w: no QMP greeting (is this a QMP socket?)", ErrProtocol)
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities","id":"caps"}` + "\n")); err != nil {
		stop()
		return nil, fmt.Errorf("qmp_capabilities: %w", err)
	}
	for {
		var m message
		if err := dec.decode(&m); err != nil {
			stop()
			return nil, fmt.Errorf("qmp_capabilities: %w", ctxErr(ctx, err))
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			stop()
			return nil, &Error{Command: "qmp_capabilities", Class: m.Error.Class, Desc: m.Error.Desc}
		}
		break
	}
	if !stop() {
		return nil, ctx.Err()
	}
	conn.SetReadDeadline(time.Time{})
	v := greet.QMP.Version
	c := &Client{
		conn:    conn,
		version: Version{Major: v.Qemu.Major, Minor: v.Qemu.Minor, Micro: v.Qemu.Micro, Package: v.Package},
		events:  make(chan Event, 64),
		pending: map[string]chan reply{},
		done:    make(chan struct{}),
	}
	go c.readLoop(dec)
	return c, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Version is the QEMU version the greeting announced.
func (c *Client) Version() Version { return c.version }

// Events delivers asynchronous events; events that find it full are dropped.
func (c *Client) Events() <-chan Event { return c.events }

func (c *Client) readLoop(dec *decoder) {
	defer close(c.events)
	for {
		raw, err := dec.next()
		var m message
		if err == nil {
			err = json.Unmarshal(raw, &m)
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.closed = true
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			close(c.done)
			return
		}
		if m.Event != "" {
			var ev Event
			if json.Unmarshal(raw, &ev) == nil {
				select {
				case c.events <- ev:
				default:
				}
			}
			continue
		}
		var id string
		if json.Unmarshal(m.ID, &id) != nil {
			continue // not ours
		}
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if !ok {
			continue
		}
		rep := reply{ret: m.Return}
		if m.Error != nil {
			rep.err = &Error{Class: m.Error.Class, Desc: m.Error.Desc}
		}
		ch <- rep
	}
}

// Execute runs command with args (nil for none) and decodes its return
// value into result (nil to ignore it). A QEMU error is *Error. When ctx
// ends first, Execute returns at once; the command may still run in QEMU.
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	id := "vmvault-" + strconv.FormatUint(c.next.Add(1), 10)
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", command, ErrClosed)
	}
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	} else {
		c.conn.SetWriteDeadline(time.Time{})
	}
	_, err = c.conn.Write(append(data, '\n'))
	c.wmu.Unlock()
	if err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case rep, ok := <-ch:
		if !ok {
			c.mu.Lock()
			rerr := c.readErr
			c.mu.Unlock()
			if rerr != nil && !errors.Is(rerr, net.ErrClosed) {
				return fmt.Errorf("qmp %s: %w: %w", command, ErrClosed, rerr)
			}
			return fmt.Errorf("qmp %s: %w", command, ErrClosed)
		}
		if rep.err != nil {
			rep.err.Command = command
			return rep.err
		}
		if result != nil && len(rep.ret) > 0 {
			if err := json.Unmarshal(rep.ret, result); err != nil {
				return fmt.Errorf("qmp %s: decode answer: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

// Done is closed when the connection ends (QEMU quit or Close).
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection; commands waiting for an answer get ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	err := c.conn.Close()
	<-c.done
	return err
}
