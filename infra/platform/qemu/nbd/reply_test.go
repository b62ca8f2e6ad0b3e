package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
)

// fakeServer answers each request with the chunks reply makes for it.
func fakeServer(t *testing.T, size int64, reply func(off int64, length uint32) [][]byte) *Conn {
	t.Helper()
	cli, srv := net.Pipe()
	t.Cleanup(func() { cli.Close(); srv.Close() })
	go func() {
		var req [28]byte
		for {
			if _, err := io.ReadFull(srv, req[:]); err != nil {
				return
			}
			if binary.BigEndian.Uint16(req[6:]) == cmdDisc {
				return
			}
			cookie := binary.BigEndian.Uint64(req[8:])
			chunks := reply(int64(binary.BigEndian.Uint64(req[16:])), binary.BigEndian.Uint32(req[24:]))
			for i, payload := range chunks {
				var h [20]byte
				binary.BigEndian.PutUint32(h[0:], structuredMagic)
				flags := uint16(0)
				if i == len(chunks)-1 {
					flags = replyFlagDone
				}
				binary.BigEndian.PutUint16(h[4:], flags)
				binary.BigEndian.PutUint16(h[6:], binary.BigEndian.Uint16(payload))
				binary.BigEndian.PutUint64(h[8:], cookie)
				binary.BigEndian.PutUint32(h[16:], uint32(len(payload)-2))
				if _, err := srv.Write(append(h[:], payload[2:]...)); err != nil {
					return
				}
			}
		}
	}()
	return &Conn{conn: cli, r: bufio.NewReader(cli), size: size, contexts: map[string]uint32{BaseAllocation: 1, DirtyBitmapPrefix + "b": 2}}
}

// Chunk payloads, each led by its type (the fake server moves it to the header).
func typed(typ uint16, body ...[]byte) []byte {
	return bytes.Join(append([][]byte{binary.BigEndian.AppendUint16(nil, typ)}, body...), nil)
}
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v int64) []byte  { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func dataChunk(at int64, d []byte) []byte { return typed(replyOffsetData, u64(at), d) }
func holeChunk(at int64, n uint32) []byte { return typed(replyOffsetHole, u64(at), u32(n)) }
func noneChunk() []byte                   { return typed(replyNone) }
func statusChunk(ctx uint32, ext ...uint32) []byte {
	b := [][]byte{u32(ctx)}
	for _, e := range ext {
		b = append(b, u32(e))
	}
	return typed(replyBlockStatus, b...)
}

// A read reply is checked by the ranges of its chunks, not by their byte
// count: chunks that overlap, leave a hole, lie outside the request or
// describe nothing fail the read (and break the connection); chunks in any
// order that tile the request are a good reply.
func TestReadReplyRanges(t *testing.T) {
	const off, n = 4096, 4096
	a, b := bytes.Repeat([]byte{0xaa}, n/2), bytes.Repeat([]byte{0xbb}, n/2)
	cases := []struct {
		name   string
		chunks [][]byte
		bad    string // "" when the reply is good
	}{
		{"data out of order", [][]byte{dataChunk(off+n/2, b), dataChunk(off, a), noneChunk()}, ""},
		{"data and hole", [][]byte{holeChunk(off+n/2, n/2), dataChunk(off, a)}, ""},
		{"same chunk twice", [][]byte{dataChunk(off, a), dataChunk(off, a), noneChunk()}, "overlaps"},
		{"overlapping hole", [][]byte{dataChunk(off, a), holeChunk(off+n/4, n*3/4), noneChunk()}, "overlaps"},
		{"only a done chunk", [][]byte{noneChunk()}, "answered 0 of 4096"},
		{"a hole left", [][]byte{dataChunk(off, a[:n/4]), dataChunk(off+n/2, b), noneChunk()}, "nothing for 5120+1024"},
		{"data before the request", [][]byte{dataChunk(off-1, a), dataChunk(off+n/2-1, b), noneChunk()}, "outside the request"},
		{"data past the request", [][]byte{dataChunk(off, a), dataChunk(off+n/2+1, b), noneChunk()}, "outside the request"},
		{"empty data chunk", [][]byte{dataChunk(off, nil), dataChunk(off, a), dataChunk(off+n/2, b)}, "outside the request"},
		{"empty hole", [][]byte{holeChunk(off, 0), dataChunk(off, a), dataChunk(off+n/2, b)}, "outside the request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeServer(t, 1<<20, func(int64, uint32) [][]byte { return tc.chunks })
			p := make([]byte, n)
			_, err := c.ReadAt(p, off)
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p[:n/2], a) {
					t.Fatal("first half differs")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("read: %v, want an error saying %q", err, tc.bad)
			}
			if _, err := c.ReadAt(p, off); err == nil || !strings.Contains(err.Error(), "broken") {
				t.Fatalf("read after a bad reply: %v, want the connection broken", err)
			}
		})
	}
}

// Block status extents are consecutive from the request's start and within
// it: a zero-length extent, a second chunk for the same context, or an
// extent past the end with more after it is an error; the last extent may
// run past the end and is clipped; another context's chunk is ignored.
func TestBlockStatusReplyRanges(t *testing.T) {
	const size = 1 << 20
	cases := []struct {
		name   string
		chunks [][]byte
		want   []Extent
		bad    string
	}{
		{"two extents", [][]byte{statusChunk(1, size/4, 0, size*3/4, StateHole)}, []Extent{{0, size / 4, 0}, {size / 4, size * 3 / 4, StateHole}}, ""},
		{"last runs past the end", [][]byte{statusChunk(1, size/2, 0, size, StateHole)}, []Extent{{0, size / 2, 0}, {size / 2, size / 2, StateHole}}, ""},
		{"other context ignored", [][]byte{statusChunk(2, 512, 1), statusChunk(1, size, 0)}, []Extent{{0, size, 0}}, ""},
		{"zero-length extent", [][]byte{statusChunk(1, 0, 0)}, nil, "extent of 0 bytes"},
		{"second chunk for the context", [][]byte{statusChunk(1, size/2, 0), statusChunk(1, size/2, StateHole)}, nil, "a second block status chunk"},
		{"past the end, then more", [][]byte{statusChunk(1, size+512, 0, 512, 0)}, nil, "runs past the request's end"},
		{"no descriptor", [][]byte{statusChunk(1)}, nil, "bad block status chunk"},
		{"no chunk for the context", [][]byte{statusChunk(2, size, 0)}, nil, "no extents"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeServer(t, size, func(int64, uint32) [][]byte { return tc.chunks })
			got, err := c.BlockStatus(context.Background(), BaseAllocation, 0, size)
			if tc.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("block status: %v %v, want an error saying %q", got, err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("extents %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("extents %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// A server that answers less than asked is asked again from where its
// extents ended, and each answer must start there.
func TestBlockStatusShortReplies(t *testing.T) {
	const size = 1 << 20
	var asked []int64
	c := fakeServer(t, size, func(off int64, _ uint32) [][]byte {
		asked = append(asked, off)
		return [][]byte{statusChunk(1, size/4, uint32(len(asked)))}
	})
	got, err := c.BlockStatus(context.Background(), BaseAllocation, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[3].Offset != size*3/4 || len(asked) != 4 || asked[3] != size*3/4 {
		t.Fatalf("extents %v, requests at %v", got, asked)
	}
}
