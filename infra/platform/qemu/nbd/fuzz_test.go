package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"
)

// discardConn is the client's side of a server whose answers come from a
// reader: writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// replay is a connection whose server sends data.
func replay(data []byte, size int64) *Conn {
	return &Conn{conn: discardConn{}, r: bufio.NewReader(bytes.NewReader(data)), size: size,
		contexts: map[string]uint32{BaseAllocation: 1, DirtyBitmapPrefix + "b": 2}}
}

// Wire forms of what servers send, built as the specification lays them out.
func optReplyBytes(option, typ uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, optReplyMagic)
	b = binary.BigEndian.AppendUint32(b, option)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func chunkBytes(flags, typ uint16, cookie uint64, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, structuredMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func serverHello() []byte {
	b := binary.BigEndian.AppendUint64(nil, nbdMagic)
	b = binary.BigEndian.AppendUint64(b, optMagic)
	b = binary.BigEndian.AppendUint16(b, flagFixedNewstyle|flagNoZeroes)
	b = append(b, optReplyBytes(optStructuredReply, repAck, nil)...)
	ctx := binary.BigEndian.AppendUint32(nil, 1)
	b = append(b, optReplyBytes(optSetMetaContext, repMetaContext, append(ctx, BaseAllocation...))...)
	b = append(b, optReplyBytes(optSetMetaContext, repAck, nil)...)
	info := binary.BigEndian.AppendUint16(nil, infoExport)
	info = binary.BigEndian.AppendUint64(info, 64<<20)
	info = binary.BigEndian.AppendUint16(info, 1)
	b = append(b, optReplyBytes(optGo, repInfo, info)...)
	return append(b, optReplyBytes(optGo, repAck, nil)...)
}

// FuzzHandshake: any server greeting and option replies end in an error
// or in an export of a size that an offset can hold, with only the
// contexts asked for.
func FuzzHandshake(f *testing.F) {
	f.Add(serverHello())
	f.Add(serverHello()[:60])
	errReply := optReplyBytes(optGo, repFlagError|1, []byte("no such export"))
	f.Add(append(serverHello()[:18+20+36+20], errReply...))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := replay(data, 0)
		c.contexts = map[string]uint32{}
		err := c.handshake(Options{MetaContexts: []string{BaseAllocation}})
		if err != nil {
			return
		}
		if c.size < 0 {
			t.Fatalf("export size %d", c.size)
		}
		for name := range c.contexts {
			if name != BaseAllocation {
				t.Fatalf("context %q agreed, not asked for", name)
			}
		}
	})
}

// FuzzRead: any reply to a READ returns (an error, or the buffer filled),
// never writes past the bytes asked for, and a server's error names the
// read. (Whether the chunks cover the range without overlap is the range
// check's to prove, not a byte count's.)
func FuzzRead(f *testing.F) {
	off := int64(1 << 20)
	data := binary.BigEndian.AppendUint64(nil, uint64(off))
	data = append(data, bytes.Repeat([]byte{0xa5}, 4096)...)
	f.Add(chunkBytes(replyFlagDone, replyOffsetData, 1, data), uint16(4096))
	hole := binary.BigEndian.AppendUint64(nil, uint64(off))
	hole = binary.BigEndian.AppendUint32(hole, 4096)
	f.Add(chunkBytes(replyFlagDone, replyOffsetHole, 1, hole), uint16(4096))
	two := append(chunkBytes(0, replyOffsetData, 1, data[:8+2048]), chunkBytes(replyFlagDone, replyOffsetHole, 1,
		binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, uint64(off+2048)), 2048))...)
	f.Add(two, uint16(4096))
	e := binary.BigEndian.AppendUint32(nil, 5)
	e = binary.BigEndian.AppendUint16(e, 2)
	f.Add(chunkBytes(replyFlagDone, replyError, 1, append(e, "io"...)), uint16(4096))
	simple := binary.BigEndian.AppendUint32(nil, simpleMagic)
	simple = binary.BigEndian.AppendUint32(simple, 0)
	simple = binary.BigEndian.AppendUint64(simple, 1)
	f.Add(append(simple, bytes.Repeat([]byte{1}, 512)...), uint16(512))
	f.Fuzz(func(t *testing.T, data []byte, n uint16) {
		c := replay(data, 64<<20)
		buf := make([]byte, int(n)+16)
		for i := range buf {
			buf[i] = 0x5a
		}
		err := c.read(buf[:n], off)
		for i := int(n); i < len(buf); i++ {
			if buf[i] != 0x5a {
				t.Fatalf("a read of %d bytes wrote byte %d", n, i)
			}
		}
		var se *Error
		if errors.As(err, &se) && se.Op != "read" {
			t.Fatalf("server error names %q", se.Op)
		}
	})
}

// FuzzBlockStatus: any reply to BLOCK_STATUS is an error or extents that
// start at the offset asked for, follow one another without gap or
// overlap, are not empty, and end at the end of the range.
func FuzzBlockStatus(f *testing.F) {
	ext := func(pairs ...uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, 1)
		for _, p := range pairs {
			b = binary.BigEndian.AppendUint32(b, p)
		}
		return b
	}
	f.Add(chunkBytes(replyFlagDone, replyBlockStatus, 1, ext(1<<20, 0, 3<<20, StateHole|StateZero)), int64(0), int64(4<<20))
	f.Add(append(chunkBytes(replyFlagDone, replyBlockStatus, 1, ext(1<<20, 0)),
		chunkBytes(replyFlagDone, replyBlockStatus, 2, ext(8<<20, 3))...), int64(0), int64(4<<20))
	f.Add(chunkBytes(replyFlagDone, replyBlockStatus, 1, ext(0, 1)), int64(4096), int64(4096))
	f.Add(append(chunkBytes(0, replyBlockStatus, 1, ext(1<<20, 0)),
		chunkBytes(replyFlagDone, replyBlockStatus, 1, ext(4<<20, 1))...), int64(0), int64(4<<20))
	f.Fuzz(func(t *testing.T, data []byte, off, length int64) {
		const size = 64 << 20
		if off < 0 || off >= size || length <= 0 || length > size {
			return
		}
		c := replay(data, size)
		got, err := c.BlockStatus(context.Background(), BaseAllocation, off, length)
		if err != nil {
			return
		}
		end := min(off+length, size)
		at := off
		for _, e := range got {
			if e.Offset != at || e.Length <= 0 || e.Offset+e.Length > end {
				t.Fatalf("extent %+v after %d in [%d, %d): %+v", e, at, off, end, got)
			}
			at += e.Length
		}
		if at != end {
			t.Fatalf("extents end at %d, not %d: %+v", at, end, got)
		}
	})
}

// A server's meta context and export answers are checked: a context not
// asked for, one id for two contexts, or an export size past an offset's
// range end the handshake.
func TestHostileHandshake(t *testing.T) {
	hello := serverHello()
	head := hello[:18+20] // greeting and the structured reply ack
	meta := func(id uint32, name string) []byte {
		return optReplyBytes(optSetMetaContext, repMetaContext, append(binary.BigEndian.AppendUint32(nil, id), name...))
	}
	ack := optReplyBytes(optSetMetaContext, repAck, nil)
	info := binary.BigEndian.AppendUint16(nil, infoExport)
	info = binary.BigEndian.AppendUint64(info, 1<<63)
	info = binary.BigEndian.AppendUint16(info, 1)
	hugeGo := append(optReplyBytes(optGo, repInfo, info), optReplyBytes(optGo, repAck, nil)...)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not asked", cat(head, meta(1, "qemu:allocation-depth"), ack), "not asked for"},
		{"one id twice", cat(head, meta(1, BaseAllocation), meta(1, DirtyBitmapPrefix+"b"), ack), "id 1 given to both"},
		{"huge export", cat(head, meta(1, BaseAllocation), ack, hugeGo), "past what an offset can hold"},
	} {
		c := replay(tc.data, 0)
		c.contexts = map[string]uint32{}
		err := c.handshake(Options{MetaContexts: []string{BaseAllocation, DirtyBitmapPrefix + "b"}})
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	c := replay(hello, 0)
	c.contexts = map[string]uint32{}
	if err := c.handshake(Options{MetaContexts: []string{BaseAllocation}}); err != nil || c.size != 64<<20 || !c.HasContext(BaseAllocation) {
		t.Fatalf("a good handshake: %v, size %d", err, c.size)
	}
}
