// Package nbd is a minimal client of the Network Block Device protocol
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md) for
// reading exports of qemu-nbd and of QEMU's own NBD server: the fixed
// newstyle handshake, structured replies, metadata contexts
// (base:allocation for holes, qemu:dirty-bitmap:<name> for changed
// blocks), NBD_OPT_GO, and the READ, BLOCK_STATUS and DISC commands.
//
// A Conn runs one request at a time (a mutex serializes them); readers that
// want parallel reads open several connections.
package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Protocol constants (names as in the specification).
const (
	nbdMagic      = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic      = 0x49484156454f5054 // "IHAVEOPT"
	optReplyMagic = 0x0003e889045565a9

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optAbort           = 2
	optGo              = 7
	optStructuredReply = 8
	optSetMetaContext  = 10

	repAck         = 1
	repInfo        = 3
	repMetaContext = 4
	repFlagError   = 1 << 31

	infoExport    = 0
	infoBlockSize = 3

	requestMagic    = 0x25609513
	simpleMagic     = 0x67446698
	structuredMagic = 0x668e33ef

	cmdRead        = 0
	cmdDisc        = 2
	cmdBlockStatus = 7

	replyFlagDone       = 1 << 0
	replyNone           = 0
	replyOffsetData     = 1
	replyOffsetHole     = 2
	replyBlockStatus    = 5
	replyError          = 1<<15 + 1
	replyErrorOffset    = 1<<15 + 2
	replyErrorTypeFlags = 1 << 15

	// maxRead bounds one READ: servers accept at least 32 MiB (QEMU's
	// limit); smaller requests keep memory per connection small.
	maxRead = 8 << 20
	// maxStatus bounds one BLOCK_STATUS request (its length is 32 bits).
	maxStatus = 1 << 30
)

// Block status flags.
const (
	// StateHole (base:allocation): the range is not allocated.
	StateHole = 1 << 0
	// StateZero (base:allocation): the range reads as zeros.
	StateZero = 1 << 1
	// StateDirty (qemu:dirty-bitmap:*): the range is dirty in the bitmap.
	StateDirty = 1 << 0
)

// Standard meta context names.
const (
	BaseAllocation = "base:allocation"
	// DirtyBitmapPrefix + a bitmap name is the context of a QEMU dirty bitmap.
	DirtyBitmapPrefix = "qemu:dirty-bitmap:"
)

// Options choose what to negotiate.
type Options struct {
	// Export is the export name ("" is the default export).
	Export string
	// MetaContexts are the metadata contexts to ask for; those the server
	// does not have are simply absent (see HasContext).
	MetaContexts []string
}

// Error is an error the server returned for an option or a command.
type Error struct {
	Op    string
	Errno uint32 // for commands: the NBD error value (errno numbering)
	Msg   string
}

func (e *Error) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("nbd %s: error %d: %s", e.Op, e.Errno, e.Msg)
	}
	return fmt.Sprintf("nbd %s: error %d", e.Op, e.Errno)
}

// Extent is a range with its block status flags in one context.
type Extent struct {
	Offset, Length int64
	Flags          uint32
}

// Conn is a connection to one export.
type Conn struct {
	conn     net.Conn
	r        *bufio.Reader
	mu       sync.Mutex
	size     int64
	flags    uint16
	contexts map[string]uint32
	cookie   uint64
	broken   error
}

// Size is the export's size in bytes.
func (c *Conn) Size() int64 { return c.size }

// HasContext reports whether the server agreed to the metadata context.
func (c *Conn) HasContext(name string) bool { _, ok := c.contexts[name]; return ok }

func (c *Conn) send(cmd uint16, flags uint16, off int64, length uint32) (uint64, error) {
	c.cookie++
	var b [28]byte
	binary.BigEndian.PutUint32(b[0:], requestMagic)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], cmd)
	binary.BigEndian.PutUint64(b[8:], c.cookie)
	binary.BigEndian.PutUint64(b[16:], uint64(off))
	binary.BigEndian.PutUint32(b[24:], length)
	_, err := c.conn.Write(b[:])
	return c.cookie, err
}

// chunk is one structured reply chunk (or a simple reply, typ replyNone).
type chunk struct {
	flags uint16
	typ   uint16
	data  []byte
}

func (c *Conn) readChunk(cookie uint64, op string, simpleData []byte) (chunk, error) {
	var magic uint32
	if err := binary.Read(c.r, binary.BigEndian, &magic); err != nil {
		return chunk{}, err
	}
	switch magic {
	case simpleMagic:
		var h struct {
			Errno  uint32
			Cookie uint64
		}
		if err := binary.Read(c.r, binary.BigEndian, &h); err != nil {
			return chunk{}, err
		}
		if h.Cookie != cookie {
			return chunk{}, fmt.Errorf("reply for request %d, want %d", h.Cookie, cookie)
		}
		if h.Errno != 0 {
			return chunk{flags: replyFlagDone}, &Error{Op: op, Errno: h.Errno}
		}
		if simpleData != nil {
			if _, err := io.ReadFull(c.r, simpleData); err != nil {
				return chunk{}, err
			}
		}
		return chunk{flags: replyFlagDone, typ: replyNone, data: simpleData}, nil
	case structuredMagic:
		var h struct {
			Flags, Typ uint16
			Cookie     uint64
			Len        uint32
		}
		if err := binary.Read(c.r, binary.BigEndian, &h); err != nil {
			return chunk{}, err
		}
		if h.Cookie != cookie {
			return chunk{}, fmt.Errorf("reply for request %d, want %d", h.Cookie, cookie)
		}
		if h.Len > maxRead+1<<20 {
			return chunk{}, fmt.Errorf("reply chunk of %d bytes", h.Len)
		}
		data := make([]byte, h.Len)
		if _, err := io.ReadFull(c.r, data); err != nil {
			return chunk{}, err
		}
		ch := chunk{flags: h.Flags, typ: h.Typ, data: data}
		if h.Typ&replyErrorTypeFlags != 0 {
			e := &Error{Op: op}
			if len(data) >= 6 {
				e.Errno = binary.BigEndian.Uint32(data)
				n := int(binary.BigEndian.Uint16(data[4:]))
				if 6+n <= len(data) {
					e.Msg = string(data[6 : 6+n])
				}
			}
			return ch, e
		}
		return ch, nil
	}
	return chunk{}, fmt.Errorf("bad reply magic %#x", magic)
}

// request sends one command and hands every reply chunk to each until the
// last. A protocol error breaks the connection for good; a server error
// for the command is returned after its last chunk.
func (c *Conn) request(op string, cmd, flags uint16, off int64, length uint32, simpleData []byte, each func(chunk) error) error {
	if c.broken != nil {
		return fmt.Errorf("nbd %s: connection broken earlier: %w", op, c.broken)
	}
	cookie, err := c.send(cmd, flags, off, length)
	if err != nil {
		c.broken = err
		return fmt.Errorf("nbd %s: %w", op, err)
	}
	var cmdErr error
	for {
		ch, err := c.readChunk(cookie, op, simpleData)
		var se *Error
		if errors.As(err, &se) {
			if cmdErr == nil {
				cmdErr = err
			}
		} else if err != nil {
			c.broken = err
			return fmt.Errorf("nbd %s: %w", op, err)
		} else if cmdErr == nil {
			if err := each(ch); err != nil {
				cmdErr = fmt.Errorf("nbd %s: %w", op, err)
			}
		}
		if ch.flags&replyFlagDone != 0 {
			return cmdErr
		}
	}
}

// ReadAt reads len(p) bytes at off; at the end of the export it returns
// what it read and io.EOF. Holes the server reports are zero-filled.
func (c *Conn) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd read: negative offset %d", off)
	}
	if off >= c.size {
		return 0, io.EOF
	}
	n := len(p)
	var eof error
	if int64(n) > c.size-off {
		n, eof = int(c.size-off), io.EOF
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for done := 0; done < n; {
		m := min(n-done, maxRead)
		if err := c.read(p[done:done+m], off+int64(done)); err != nil {
			return done, err
		}
		done += m
	}
	return n, eof
}

func (c *Conn) read(p []byte, off int64) error {
	clear(p)
	var covered int64
	err := c.request("read", cmdRead, 0, off, uint32(len(p)), p, func(ch chunk) error {
		switch ch.typ {
		case replyNone:
			if ch.data != nil { // a simple reply carries the whole range
				covered = int64(len(p))
			}
		case replyOffsetData:
			if len(ch.data) < 8 {
				return errors.New("short data chunk")
			}
			at := int64(binary.BigEndian.Uint64(ch.data)) - off
			d := ch.data[8:]
			if at < 0 || at+int64(len(d)) > int64(len(p)) {
				return fmt.Errorf("data chunk at %d+%d outside the request", at+off, len(d))
			}
			copy(p[at:], d)
			covered += int64(len(d))
		case replyOffsetHole:
			if len(ch.data) < 12 {
				return errors.New("short hole chunk")
			}
			at := int64(binary.BigEndian.Uint64(ch.data)) - off
			n := int64(binary.BigEndian.Uint32(ch.data[8:]))
			if at < 0 || at+n > int64(len(p)) {
				return fmt.Errorf("hole chunk at %d+%d outside the request", at+off, n)
			}
			covered += n // p was cleared
		default:
			return fmt.Errorf("unexpected reply chunk type %d for read", ch.typ)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w (at %d, %d bytes)", err, off, len(p))
	}
	if covered != int64(len(p)) {
		return fmt.Errorf("nbd read at %d: server answered %d of %d bytes", off, covered, len(p))
	}
	return nil
}

// BlockStatus returns the extents of [off, off+length) in metadata context
// name, in order and covering the range (clipped to the export's size).
// ctx ends a wait for the server by breaking the connection.
func (c *Conn) BlockStatus(ctx context.Context, name string, off, length int64) ([]Extent, error) {
	id, ok := c.contexts[name]
	if !ok {
		return nil, fmt.Errorf("nbd block status: the server did not agree to context %q", name)
	}
	end := min(off+length, c.size)
	c.mu.Lock()
	defer c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var out []Extent
	for off < end {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(end-off, maxStatus)
		var got []Extent
		answered := false
		err := c.request("block status "+name, cmdBlockStatus, 0, off, uint32(n), nil, func(ch chunk) error {
			if ch.typ != replyBlockStatus {
				return fmt.Errorf("unexpected reply chunk type %d for block status", ch.typ)
			}
			if len(ch.data) < 4 || (len(ch.data)-4)%8 != 0 {
				return errors.New("bad block status chunk")
			}
			if binary.BigEndian.Uint32(ch.data) != id {
				return nil // another context's answer
			}
			// One chunk per context (the specification's MUST): a second
			// would overlay the first's ranges with other flags.
			if answered {
				return errors.New("two block status chunks for one context")
			}
			answered = true
			at := off
			for d := ch.data[4:]; len(d) >= 8; d = d[8:] {
				l := int64(binary.BigEndian.Uint32(d))
				if l == 0 {
					// Read as "the rest", it would give one extent's flags
					// (a hole, say) to the whole range.
					return fmt.Errorf("an extent of length 0 at %d", at)
				}
				if at+l > end {
					l = end - at // the last extent may run past the request
				}
				if l <= 0 {
					break
				}
				got = append(got, Extent{Offset: at, Length: l, Flags: binary.BigEndian.Uint32(d[4:])})
				at += l
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if len(got) == 0 {
			return nil, fmt.Errorf("nbd block status %s at %d: no extents", name, off)
		}
		out = append(out, got...)
		last := got[len(got)-1]
		off = last.Offset + last.Length
	}
	return out, nil
}

// Close ends the session (NBD_CMD_DISC) and closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.send(cmdDisc, 0, 0, 0)
		c.broken = errors.New("closed")
	}
	return c.conn.Close()
}
