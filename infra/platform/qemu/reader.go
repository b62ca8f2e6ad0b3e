package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/nbd"
)

// readConns is how many NBD connections a reader opens at most, for
// parallel reads (a connection runs one request at a time).
const readConns = 4

func (p *qemuPlatform) OpenDisk(ctx context.Context, snap platform.Snapshot, disk string) (platform.DiskReader, error) {
	tok, err := parseToken(snap)
	if err != nil {
		return nil, err
	}
	if tok.Mode == modeStopped {
		return p.vms.OpenDisk(ctx, platform.Snapshot{ID: snap.ID, VM: snap.VM, Consistency: snap.Consistency, Token: tok.Images}, disk)
	}
	if tok.Mode == modeLocal {
		return p.openLocal(ctx, snap, tok, disk)
	}
	if err := p.checkTokenPaths(snap.VM, tok); err != nil {
		return nil, err
	}
	fd, ok := tok.Disks[disk]
	if !ok {
		if vm, err := p.vms.DescribeVM(ctx, snap.VM); err == nil {
			if d, ok := findDisk(vm, disk); ok && d.Role == platform.DiskTemp {
				return nil, fmt.Errorf("open disk %q of vm %q: it is a temp disk, which is never backed up: %w", disk, snap.VM, platform.ErrNotSupported)
			}
		}
		return nil, fmt.Errorf("open disk of vm %q: snapshot %q has no disk %q: %w", snap.VM, snap.ID, disk, platform.ErrInvalidVM)
	}
	r := &reader{vm: snap.VM, disk: disk, sock: tok.NBD, d: fd, pool: make(chan *nbd.Conn, readConns)}
	r.alive = func(ctx context.Context) error { return p.fleeceAlive(ctx, snap.VM, disk, fd) }
	r.opt = nbd.Options{Export: fd.Export, MetaContexts: []string{nbd.BaseAllocation}}
	for _, b := range fd.Chain {
		r.opt.MetaContexts = append(r.opt.MetaContexts, nbd.DirtyBitmapPrefix+b)
	}
	c, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	if c.Size() != fd.Size {
		c.Close()
		return nil, fmt.Errorf("open disk %q of vm %q: export is %d bytes, the snapshot %d: %w", disk, snap.VM, c.Size(), fd.Size, platform.ErrDiskChanged)
	}
	r.pool <- c
	return r, nil
}

// reader reads one fleeced disk over NBD. ReadAt is safe for concurrent
// use: each call borrows a connection.
type reader struct {
	vm, disk, sock string
	d              fleeceDisk
	opt            nbd.Options
	pool           chan *nbd.Conn
	mu             sync.Mutex
	conns          []*nbd.Conn
	// alive checks that the fleecing still holds the snapshot (alive.go).
	alive func(context.Context) error
}

var _ platform.DiskReader = (*reader)(nil)

func (r *reader) dial(ctx context.Context) (*nbd.Conn, error) {
	c, err := nbd.Dial(ctx, "unix", r.sock, r.opt)
	if err != nil {
		return nil, fmt.Errorf("vm %q disk %q: snapshot export: %w", r.vm, r.disk, err)
	}
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	return c, nil
}

func (r *reader) get(ctx context.Context) (*nbd.Conn, error) {
	select {
	case c := <-r.pool:
		return c, nil
	default:
	}
	r.mu.Lock()
	room := len(r.conns) < readConns
	r.mu.Unlock()
	if room {
		return r.dial(ctx)
	}
	select {
	case c := <-r.pool:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *reader) put(c *nbd.Conn) { r.pool <- c }

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	c, err := r.get(context.Background())
	if err != nil {
		return 0, err
	}
	defer r.put(c)
	n, err := c.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("vm %q disk %q: %w", r.vm, r.disk, err)
	}
	return n, err
}

func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, c := range r.conns {
		errs = append(errs, c.Close())
	}
	r.conns = nil
	return errors.Join(errs...)
}

func (r *reader) Size() int64 { return r.d.Size }

// status returns the extents of context name whose flags have bit set.
func (r *reader) status(ctx context.Context, name string, bit uint32, want bool) ([]extent.Extent, error) {
	c, err := r.get(ctx)
	if err != nil {
		return nil, err
	}
	defer r.put(c)
	if !c.HasContext(name) {
		return nil, errNoContext
	}
	ext, err := c.BlockStatus(ctx, name, 0, r.d.Size)
	if err != nil {
		return nil, fmt.Errorf("vm %q disk %q: %w", r.vm, r.disk, err)
	}
	out := []extent.Extent{}
	for _, e := range ext {
		if (e.Flags&bit != 0) == want {
			out = append(out, extent.Extent{Offset: e.Offset, Length: e.Length})
		}
	}
	return extent.Normalize(out), nil
}

var errNoContext = errors.New("metadata context not offered")

// DataExtents are the ranges that do not read as zeros (base:allocation
// without NBD_STATE_ZERO; a hole alone does not promise zeros).
func (r *reader) DataExtents(ctx context.Context) ([]extent.Extent, error) {
	ext, err := r.status(ctx, nbd.BaseAllocation, nbd.StateZero, false)
	if errors.Is(err, errNoContext) {
		return []extent.Extent{{Offset: 0, Length: r.d.Size}}, nil
	}
	return ext, err
}

// ChangedExtents is the union of the frozen bitmaps from the parent's
// checkpoint to this snapshot; ok is false when the chain does not reach
// back to the parent (see the package doc).
func (r *reader) ChangedExtents(ctx context.Context, sinceToken string) ([]extent.Extent, bool, error) {
	if sinceToken == "" {
		return nil, false, nil
	}
	parent, err := parseToken(platform.Snapshot{Token: sinceToken})
	if err != nil || parent.Mode != modeFleece {
		return nil, false, nil
	}
	pd, ok := parent.Disks[r.disk]
	if !ok || pd.Size != r.d.Size || pd.Node != r.d.Node {
		return nil, false, nil
	}
	i := slices.Index(r.d.Chain, pd.Checkpoint)
	if i < 0 {
		return nil, false, nil
	}
	var all []extent.Extent
	for _, b := range r.d.Chain[i:] {
		ext, err := r.status(ctx, nbd.DirtyBitmapPrefix+b, nbd.StateDirty, true)
		if errors.Is(err, errNoContext) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		all = append(all, ext...)
	}
	out := extent.Normalize(all)
	if out == nil {
		out = []extent.Extent{}
	}
	return out, true, nil
}

// Verify checks, at the end of a read, that the fleecing held the snapshot
// all along: its copy-before-write job still runs. A job that stopped
// mid-read lets the guest's writes into the export (alive.go).
func (r *reader) Verify(ctx context.Context) error { return r.alive(ctx) }
