package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
)

// Packer collects sealed blobs into packs and uploads them in the
// background, at most maxUploads at a time. addBlob and flush are called from
// one goroutine; a pack's index object is written after the pack itself, so
// an index never names a pack that is not durable.
type Packer struct {
	v       *Repo
	ctx     context.Context
	buf     []byte
	entries []format.IndexEntry
	seq     int // sequence number of the open pack, from 1
	// pending holds blobs added but not yet indexed, so a block seen twice
	// in one backup is stored once; entries leave when their pack is indexed,
	// which keeps memory bounded by the packs in flight, not the disk size.
	pendingMu sync.Mutex
	pending   map[format.ID]struct{}
	sem       chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	done      map[int]bool
	durable   int // every pack with seq <= durable is uploaded and indexed
	err       error
	packs     int
}

const maxUploads = 4

// NewPacker returns a pack writer for the vault v.
func NewPacker(ctx context.Context, v *Repo) *Packer {
	return &Packer{v: v, ctx: ctx, seq: 1, pending: make(map[format.ID]struct{}), sem: make(chan struct{}, maxUploads), done: make(map[int]bool)}
}

// Has reports whether id is stored or queued in this packer.
func (p *Packer) Has(idx *index.Index, id format.ID) bool {
	// A blob leaves pending only after it is in the index, so one of the two has it.
	p.pendingMu.Lock()
	_, ok := p.pending[id]
	p.pendingMu.Unlock()
	return ok || idx.DedupHas(id)
}

// AddBlob appends a sealed blob and returns the sequence number of its pack.
func (p *Packer) AddBlob(id format.ID, typ format.BlobType, sealed []byte) (int, error) {
	if err := p.Failed(); err != nil {
		return 0, err
	}
	if p.buf == nil {
		p.buf = make([]byte, 0, p.v.cfg.PackSize+p.v.cfg.BlockSize+4096)
	}
	p.entries = append(p.entries, format.IndexEntry{ID: id, Offset: uint32(len(p.buf)), Length: uint32(len(sealed)), Type: typ})
	p.buf = append(p.buf, sealed...)
	p.pendingMu.Lock()
	p.pending[id] = struct{}{}
	p.pendingMu.Unlock()
	seq := p.seq
	if len(p.buf) >= p.v.cfg.PackSize {
		p.Flush()
	}
	return seq, nil
}

// Flush starts uploading the open pack, if it holds anything.
func (p *Packer) Flush() {
	if len(p.entries) == 0 {
		return
	}
	buf, entries, seq := p.buf, p.entries, p.seq
	p.buf, p.entries = nil, nil
	p.seq++
	select {
	case p.sem <- struct{}{}:
	case <-p.ctx.Done():
		p.fail(p.ctx.Err())
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		err := p.upload(buf, entries)
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil {
			if p.err == nil {
				p.err = err
			}
			return
		}
		p.done[seq] = true
		for p.done[p.durable+1] {
			delete(p.done, p.durable+1)
			p.durable++
		}
		p.packs++
	}()
}

// PackHeader returns the blobs a whole pack lists in its header.
func (v *Repo) PackHeader(pack []byte) (body []byte, entries []format.IndexEntry, err error) {
	body, sealed, err := format.SplitPack(pack)
	if err != nil {
		return nil, nil, err
	}
	entries, err = format.OpenPackHeader(v.keys, sealed, len(body))
	if err != nil {
		return nil, nil, fmt.Errorf("pack %w", err)
	}
	return body, entries, nil
}

func (p *Packer) upload(buf []byte, entries []format.IndexEntry) error {
	header := format.AppendPackEntries(make([]byte, 0, len(entries)*format.PackEntryLen), entries)
	sealed := p.v.keys.Seal(nil, header, []byte(format.PackHeaderAD))
	buf = append(buf, sealed...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(sealed)))
	id := p.v.keys.Hash(buf)
	if err := p.v.PutObject(p.ctx, format.PackKey(id), buf); err != nil {
		return fmt.Errorf("put pack %s: %w", id.Short(), err)
	}
	faultpoint.Hit("transfer.pack")
	pi := format.PackIndex{Pack: id, Size: int64(len(buf)), Entries: entries}
	if err := p.v.PutPackIndex(p.ctx, pi); err != nil {
		return fmt.Errorf("index pack %s: %w", id.Short(), err)
	}
	faultpoint.Hit("transfer.packindex")
	idx, err := p.v.Index(p.ctx)
	if err != nil {
		return err
	}
	idx.AddPack(pi)
	p.pendingMu.Lock()
	for _, e := range entries {
		delete(p.pending, e.ID)
	}
	p.pendingMu.Unlock()
	return nil
}

func (p *Packer) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

// Failed is the first upload's error, if any.
func (p *Packer) Failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Uploaded returns how many packs are stored.
func (p *Packer) Uploaded() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.packs
}

// LastSeq is the sequence number of the newest pack that holds anything
// added so far: the open pack if it has entries, else the last flushed one.
func (p *Packer) LastSeq() int {
	if len(p.entries) > 0 {
		return p.seq
	}
	return p.seq - 1
}

// DurableSeq returns the highest seq such that it and all before it are durable.
func (p *Packer) DurableSeq() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.durable
}

// Finish flushes the open pack and waits for every upload.
func (p *Packer) Finish() error {
	p.Flush()
	p.wg.Wait()
	return p.Failed()
}

// Abort waits for uploads in flight without starting new ones.
func (p *Packer) Abort() {
	p.wg.Wait()
}
