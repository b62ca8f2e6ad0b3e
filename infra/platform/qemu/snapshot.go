package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

// token is the qemu platform's Snapshot.Token.
type token struct {
	Version int    `json:"v"`
	Mode    string `json:"mode"` // modeStopped or modeFleece
	// Images is the images platform's token of a stopped VM's snapshot.
	Images string `json:"images,omitempty"`
	NBD    string `json:"nbd,omitempty"` // the NBD server's unix socket
	// Disks are the fleeced disks by name (running VMs).
	Disks map[string]fleeceDisk `json:"disks,omitempty"`
	// Local are the disks served by qemu-nbd (modeLocal, see local.go).
	Local map[string]localDisk `json:"local,omitempty"`
}

type fleeceDisk struct {
	Node     string `json:"node"`      // the disk's block node
	Fleece   string `json:"fleece"`    // the temporary node
	Job      string `json:"job"`       // the copy-before-write job
	ExportID string `json:"export_id"` // block export id
	Export   string `json:"export"`    // NBD export name
	Temp     string `json:"temp"`      // the temporary qcow2 file
	Size     int64  `json:"size"`
	// Checkpoint is the bitmap this snapshot started: it records what
	// changes after the snapshot.
	Checkpoint string `json:"checkpoint"`
	// Chain are the frozen bitmaps when the snapshot was taken, oldest
	// first; the last holds the writes up to this snapshot.
	Chain []string `json:"chain,omitempty"`
}

const (
	tokenVersion = 1
	modeStopped  = "stopped"
	modeFleece   = "fleece"
	// maxChain bounds the frozen bitmaps kept per disk when no recovery
	// point is committed (CommitChanges not called): older ones are
	// dropped and a parent that old falls back to checksums.
	maxChain = 8
	// nbdSocket is the NBD server's socket in the VM folder.
	nbdSocket = ".vmvault-nbd.sock"
)

func parseToken(snap platform.Snapshot) (token, error) {
	var t token
	if err := json.Unmarshal([]byte(snap.Token), &t); err != nil || t.Version != tokenVersion || (t.Mode != modeStopped && t.Mode != modeFleece && t.Mode != modeLocal) {
		return token{}, fmt.Errorf("snapshot %q of vm %q: not a qemu snapshot token (%v)", snap.ID, snap.VM, err)
	}
	return t, nil
}

func snapHash(vm, id string) string {
	h := sha256.Sum256([]byte(vm + "\x00" + id))
	return hex.EncodeToString(h[:6])
}

func (p *qemuPlatform) CreateSnapshot(ctx context.Context, name string, req platform.SnapshotRequest) (platform.Snapshot, error) {
	vm, s, err := p.describe(ctx, name)
	if err != nil {
		return platform.Snapshot{}, err
	}
	if vm.Power == platform.PowerStopped {
		return p.stoppedSnapshot(ctx, name, req)
	}
	c, ok, err := dial(ctx, s)
	if err != nil {
		return platform.Snapshot{}, fmt.Errorf("snapshot vm %q: %w", name, err)
	}
	if !ok {
		return p.stoppedSnapshot(ctx, name, req) // stopped meanwhile
	}
	defer c.Close()
	tok := p.fleecePlan(vm, s, req.ID)
	// A retry starts over: whatever an earlier attempt left is removed
	// first (its bitmaps stay in the chain, so no change is lost).
	if err := p.deleteFleece(ctx, c, tok); err != nil {
		return platform.Snapshot{}, fmt.Errorf("snapshot vm %q: clean up an earlier attempt: %w", name, err)
	}
	q := p.startQuiesce(ctx, vm, s, req)
	defer q.close()
	notes, err := p.fleece(ctx, c, vm, &tok, q)
	q.end(ctx)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), qmpTimeout)
		defer cancel()
		if cerr := p.deleteFleece(cctx, c, tok); cerr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
		}
		return platform.Snapshot{}, fmt.Errorf("snapshot running vm %q: %w", name, err)
	}
	data, err := json.Marshal(tok)
	if err != nil {
		return platform.Snapshot{}, err
	}
	notes = append(append([]string{"vm is running: point-in-time image fleecing (copy-before-write into a temporary node, read over NBD) without pausing it; " + q.summary()}, q.notes...), notes...)
	return platform.Snapshot{ID: req.ID, VM: name, Consistency: q.consistency(), Notes: notes, Token: string(data)}, nil
}

func (p *qemuPlatform) stoppedSnapshot(ctx context.Context, name string, req platform.SnapshotRequest) (platform.Snapshot, error) {
	if vm, err := p.vms.DescribeVM(ctx, name); err == nil && needsLocal(vm) {
		return p.localSnapshot(ctx, vm, req)
	}
	snap, err := p.vms.CreateSnapshot(ctx, name, req)
	if err != nil {
		return snap, err
	}
	data, err := json.Marshal(token{Version: tokenVersion, Mode: modeStopped, Images: snap.Token})
	if err != nil {
		return platform.Snapshot{}, err
	}
	snap.Token = string(data)
	return snap, nil
}

// DeleteSnapshot removes what a snapshot keeps; a snapshot that is gone, or
// whose QEMU is gone, is not an error.
func (p *qemuPlatform) DeleteSnapshot(ctx context.Context, snap platform.Snapshot) error {
	if snap.Token == "" {
		return p.deletePlanned(ctx, snap)
	}
	tok, err := parseToken(snap)
	if err != nil {
		return err
	}
	if tok.Mode == modeStopped {
		return p.vms.DeleteSnapshot(ctx, platform.Snapshot{ID: snap.ID, VM: snap.VM, Token: tok.Images})
	}
	if tok.Mode == modeLocal {
		return p.deleteLocal(ctx, snap, tok)
	}
	if err := p.checkTokenPaths(snap.VM, tok); err != nil {
		return err
	}
	c, ok, err := p.dialVM(ctx, snap.VM)
	if err != nil {
		return fmt.Errorf("delete snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	if !ok { // QEMU is gone, and with it every node, job and export
		var errs []error
		for _, fd := range tok.Disks {
			if err := os.Remove(fd.Temp); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	defer c.Close()
	if err := p.deleteFleece(ctx, c, tok); err != nil {
		return fmt.Errorf("delete snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	return nil
}

// checkTokenPaths refuses a token whose files are not vmvault's own in the
// VM folder: a payload is not trusted with what to delete.
func (p *qemuPlatform) checkTokenPaths(vm string, tok token) error {
	dir := p.vmDir(vm)
	for name, fd := range tok.Disks {
		if filepath.Dir(fd.Temp) != dir || !strings.HasPrefix(filepath.Base(fd.Temp), ".vmvault-fleece-") {
			return fmt.Errorf("vm %q disk %q: snapshot token names %s, not a fleecing file of the vm folder", vm, name, fd.Temp)
		}
	}
	if tok.NBD != filepath.Join(dir, nbdSocket) {
		return fmt.Errorf("vm %q: snapshot token names nbd socket %s", vm, tok.NBD)
	}
	return nil
}

// CommitChanges removes each disk's frozen bitmaps older than the
// snapshot's checkpoint: the recovery point made from snap is durable, so
// the next backup's changes start there (see platform.BitmapCommitter).
func (p *qemuPlatform) CommitChanges(ctx context.Context, snap platform.Snapshot) error {
	tok, err := parseToken(snap)
	if err != nil {
		return err
	}
	if tok.Mode != modeFleece {
		return nil
	}
	c, ok, err := p.dialVM(ctx, snap.VM)
	if err != nil {
		return fmt.Errorf("commit changes of snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	if !ok {
		return nil // QEMU is gone; the next snapshot finds no chain or a longer one
	}
	defer c.Close()
	nodes, err := queryNodes(ctx, c)
	if err != nil {
		return err
	}
	var errs []error
	for name, fd := range tok.Disks {
		cp, ok := bitmapGen(fd.Checkpoint)
		if !ok {
			continue
		}
		for _, b := range ownBitmaps(nodes[fd.Node]) {
			if g, _ := bitmapGen(b.Name); g < cp && !b.Recording {
				if err := c.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": fd.Node, "name": b.Name}, nil); err != nil {
					errs = append(errs, fmt.Errorf("disk %q: %w", name, err))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("commit changes of snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	return nil
}

// dialVM connects to the QMP socket the inventory names for vm, never to a
// path from a snapshot token: a token travels through workflow payloads and
// the vault, and is not trusted to choose what the worker connects to. A VM
// gone from the inventory counts as a QEMU that is gone.
func (p *qemuPlatform) dialVM(ctx context.Context, name string) (*qmp.Client, bool, error) {
	vm, err := p.vms.DescribeVM(ctx, name)
	if errors.Is(err, platform.ErrVMNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	s, err := p.settings(vm)
	if err != nil {
		return nil, false, err
	}
	return dial(ctx, s)
}
