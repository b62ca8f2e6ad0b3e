package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"
)

// The newstyle fixed handshake: options, structured replies, meta
// contexts, and NBD_OPT_GO.

// Dial connects to an NBD server (network "unix" or "tcp") and negotiates
// the export; ctx bounds the handshake.
func Dial(ctx context.Context, network, addr string, opt Options) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nbd dial %s: %w", addr, err)
	}
	c := &Conn{conn: nc, r: bufio.NewReaderSize(nc, 256<<10), contexts: map[string]uint32{}}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	err = c.handshake(opt)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("nbd %s export %q: %w", addr, opt.Export, err)
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *Conn) handshake(opt Options) error {
	var hello struct {
		Magic, Opt uint64
		Flags      uint16
	}
	if err := binary.Read(c.r, binary.BigEndian, &hello); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if hello.Magic != nbdMagic || hello.Opt != optMagic {
		return errors.New("not a newstyle NBD server")
	}
	if hello.Flags&flagFixedNewstyle == 0 {
		return errors.New("server does not speak fixed newstyle")
	}
	clientFlags := uint32(flagFixedNewstyle)
	if hello.Flags&flagNoZeroes != 0 {
		clientFlags |= flagNoZeroes
	}
	if err := binary.Write(c.conn, binary.BigEndian, clientFlags); err != nil {
		return err
	}
	// Structured replies first: metadata contexts need them.
	if err := c.sendOpt(optStructuredReply, nil); err != nil {
		return err
	}
	if err := c.expectAck(optStructuredReply, "structured reply"); err != nil {
		return err
	}
	if len(opt.MetaContexts) > 0 {
		if err := c.setMetaContexts(opt); err != nil {
			return err
		}
	}
	return c.goExport(opt.Export)
}

func (c *Conn) sendOpt(option uint32, data []byte) error {
	b := make([]byte, 16, 16+len(data))
	binary.BigEndian.PutUint64(b, optMagic)
	binary.BigEndian.PutUint32(b[8:], option)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	_, err := c.conn.Write(append(b, data...))
	return err
}

// optReply reads one option reply; an error reply becomes *Error.
func (c *Conn) optReply(option uint32, what string) (typ uint32, data []byte, err error) {
	var h struct {
		Magic       uint64
		Option, Typ uint32
		Len         uint32
	}
	if err := binary.Read(c.r, binary.BigEndian, &h); err != nil {
		return 0, nil, fmt.Errorf("%s: read reply: %w", what, err)
	}
	if h.Magic != optReplyMagic || h.Option != option {
		return 0, nil, fmt.Errorf("%s: bad option reply (magic %#x, option %d)", what, h.Magic, h.Option)
	}
	if h.Len > 1<<20 {
		return 0, nil, fmt.Errorf("%s: option reply of %d bytes", what, h.Len)
	}
	data = make([]byte, h.Len)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return 0, nil, fmt.Errorf("%s: read reply: %w", what, err)
	}
	if h.Typ&repFlagError != 0 {
		return 0, nil, &Error{Op: what, Errno: h.Typ &^ repFlagError, Msg: string(data)}
	}
	return h.Typ, data, nil
}

func (c *Conn) expectAck(option uint32, what string) error {
	typ, _, err := c.optReply(option, what)
	if err != nil {
		return err
	}
	if typ != repAck {
		return fmt.Errorf("%s: reply type %d, want ack", what, typ)
	}
	return nil
}

func (c *Conn) setMetaContexts(opt Options) error {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(opt.Export)))
	b = append(b, opt.Export...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(opt.MetaContexts)))
	for _, q := range opt.MetaContexts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	if err := c.sendOpt(optSetMetaContext, b); err != nil {
		return err
	}
	asked := map[string]bool{}
	for _, q := range opt.MetaContexts {
		asked[q] = true
	}
	ids := map[uint32]string{}
	for {
		typ, data, err := c.optReply(optSetMetaContext, "set meta context")
		if err != nil {
			return err
		}
		switch typ {
		case repAck:
			return nil
		case repMetaContext:
			if len(data) < 4 {
				return errors.New("set meta context: short reply")
			}
			// Block status answers are told apart by id alone: a context
			// not asked for, or an id given twice, would let one context's
			// answers (dirty blocks) pass for another's (holes).
			name, id := string(data[4:]), binary.BigEndian.Uint32(data)
			if !asked[name] {
				return fmt.Errorf("set meta context: server agreed to %.64q, which was not asked for", name)
			}
			if other, ok := ids[id]; ok && other != name {
				return fmt.Errorf("set meta context: id %d given to both %q and %q", id, other, name)
			}
			if _, ok := c.contexts[name]; ok && c.contexts[name] != id {
				return fmt.Errorf("set meta context: %q given two ids", name)
			}
			ids[id] = name
			c.contexts[name] = id
		default:
			return fmt.Errorf("set meta context: reply type %d", typ)
		}
	}
}

func (c *Conn) goExport(name string) error {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, infoBlockSize)
	if err := c.sendOpt(optGo, b); err != nil {
		return err
	}
	gotSize := false
	for {
		typ, data, err := c.optReply(optGo, "go")
		if err != nil {
			return err
		}
		switch typ {
		case repAck:
			if !gotSize {
				return errors.New("go: no export size")
			}
			return nil
		case repInfo:
			if len(data) >= 12 && binary.BigEndian.Uint16(data) == infoExport {
				size := binary.BigEndian.Uint64(data[2:])
				if size > math.MaxInt64 {
					return fmt.Errorf("go: export size %d is past what an offset can hold", size)
				}
				c.size = int64(size)
				c.flags = binary.BigEndian.Uint16(data[10:])
				gotSize = true
			}
		default:
			return fmt.Errorf("go: reply type %d", typ)
		}
	}
}
