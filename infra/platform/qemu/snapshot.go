package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// fleecePlan names everything a fleecing snapshot creates, from the
// snapshot id alone, so that a retry or a cleanup finds it.
func (p *qemuPlatform) fleecePlan(vm platform.VM, s Settings, id string) token {
	h := snapHash(vm.Name, id)
	tok := token{Version: tokenVersion, Mode: modeFleece, NBD: filepath.Join(p.vmDir(vm.Name), nbdSocket), Disks: map[string]fleeceDisk{}}
	for i, d := range vm.Disks {
		if d.Role == platform.DiskTemp {
			continue
		}
		tok.Disks[d.Name] = fleeceDisk{
			Node:     s.Nodes[d.Name],
			Fleece:   fmt.Sprintf("vvf-%s-%d", h, i),
			Job:      fmt.Sprintf("vvj-%s-%d", h, i),
			ExportID: fmt.Sprintf("vmvault-%s-%d", h, i),
			Export:   fmt.Sprintf("vmvault-%s-%s", h, d.Name),
			Temp:     filepath.Join(p.vmDir(vm.Name), fmt.Sprintf(".vmvault-fleece-%s-%d.qcow2", h, i)),
		}
	}
	return tok
}

// fleece sets up the snapshot tok plans: temporary nodes, then one
// transaction over all disks (freeze bitmaps, start the next ones, start
// copy-before-write), then the exports.
func (p *qemuPlatform) fleece(ctx context.Context, c *qmp.Client, vm platform.VM, tok *token, q *quiescer) (notes []string, err error) {
	nodes, err := queryNodes(ctx, c)
	if err != nil {
		return nil, err
	}
	var actions []map[string]any
	act := func(typ string, data map[string]any) {
		actions = append(actions, map[string]any{"type": typ, "data": data})
	}
	for _, d := range vm.Disks {
		fd, ok := tok.Disks[d.Name]
		if !ok {
			continue
		}
		n, ok := nodes[fd.Node]
		if !ok {
			return nil, fmt.Errorf("disk %q: the running QEMU has no block node %q (set nodes.%s in %s): %w", d.Name, fd.Node, d.Name, SettingsFile, platform.ErrInvalidVM)
		}
		fd.Size = n.Image.VirtualSize
		if err := createTemp(ctx, fd.Temp, fd.Size); err != nil {
			return nil, fmt.Errorf("disk %q: %w", d.Name, err)
		}
		if err := c.Execute(ctx, "blockdev-add", map[string]any{
			"driver": "qcow2", "node-name": fd.Fleece,
			"file":    map[string]any{"driver": "file", "filename": fd.Temp},
			"backing": fd.Node,
		}, nil); err != nil {
			return nil, fmt.Errorf("disk %q: %w", d.Name, err)
		}
		// Bitmaps: drop an inconsistent chain (QEMU killed while it
		// recorded), freeze the active ones, start the next.
		own := ownBitmaps(n)
		gen := 0
		for _, b := range own {
			if b.Inconsistent {
				notes = append(notes, fmt.Sprintf("cbt: disk %s: bitmap %s is inconsistent (QEMU stopped uncleanly): the chain restarts", d.Name, b.Name))
				for _, b := range own {
					c.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": fd.Node, "name": b.Name}, nil)
				}
				own = nil
				break
			}
		}
		fd.Chain = nil
		for _, b := range own {
			g, _ := bitmapGen(b.Name)
			gen = max(gen, g)
			if b.Recording {
				act("block-dirty-bitmap-disable", map[string]any{"node": fd.Node, "name": b.Name})
			}
			fd.Chain = append(fd.Chain, b.Name)
		}
		if len(own) == 0 {
			notes = append(notes, fmt.Sprintf("cbt: disk %s: no dirty bitmap yet: tracking starts with this snapshot", d.Name))
		}
		fd.Checkpoint = bitmapName(gen+1, strings.TrimPrefix(fd.Fleece, "vvf-"))
		act("block-dirty-bitmap-add", map[string]any{"node": fd.Node, "name": fd.Checkpoint, "persistent": d.Format == "qcow2"})
		act("blockdev-backup", map[string]any{"device": fd.Node, "target": fd.Fleece, "sync": "none", "job-id": fd.Job})
		tok.Disks[d.Name] = fd
	}
	// The guest is frozen for the transaction alone: nodes are ready, and
	// the exports come after the thaw.
	q.freeze(ctx)
	err = c.Execute(ctx, "transaction", map[string]any{"actions": actions}, nil)
	q.thaw(ctx)
	if err != nil {
		return nil, err
	}
	// Bound the chain when nothing is committed.
	for name, fd := range tok.Disks {
		if len(fd.Chain) > maxChain {
			drop := fd.Chain[:len(fd.Chain)-maxChain]
			for _, b := range drop {
				c.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": fd.Node, "name": b}, nil)
			}
			fd.Chain = fd.Chain[len(drop):]
			notes = append(notes, fmt.Sprintf("cbt: disk %s: %d uncommitted bitmaps dropped (no recovery point committed for %d snapshots)", name, len(drop), maxChain))
			tok.Disks[name] = fd
		}
	}
	if err := startNBD(ctx, c, tok.NBD); err != nil {
		return notes, err
	}
	for name, fd := range tok.Disks {
		var bitmaps []map[string]any
		for _, b := range fd.Chain {
			bitmaps = append(bitmaps, map[string]any{"node": fd.Node, "name": b})
		}
		args := map[string]any{"type": "nbd", "id": fd.ExportID, "node-name": fd.Fleece, "name": fd.Export, "writable": false}
		if len(bitmaps) > 0 {
			args["bitmaps"] = bitmaps
		}
		if err := c.Execute(ctx, "block-export-add", args, nil); err != nil {
			return notes, fmt.Errorf("disk %q: %w", name, err)
		}
	}
	return notes, nil
}

// createTemp creates the temporary qcow2 image the fleecing node writes.
func createTemp(ctx context.Context, path string, size int64) error {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return fmt.Errorf("fleecing needs qemu-img (Debian: qemu-utils): %w", err)
	}
	os.Remove(path)
	out, err := exec.CommandContext(ctx, bin, "create", "-q", "-f", "qcow2", path, fmt.Sprint(size)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img create %s: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startNBD starts QEMU's NBD server on sock unless it runs already (QEMU
// has one NBD server; vmvault's exports share it).
func startNBD(ctx context.Context, c *qmp.Client, sock string) error {
	if len(sock) > 107 {
		return fmt.Errorf("nbd socket %s is longer than a unix socket path may be", sock)
	}
	err := c.Execute(ctx, "nbd-server-start", map[string]any{"addr": map[string]any{"type": "unix", "data": map[string]any{"path": sock}}}, nil)
	var qe *qmp.Error
	if errors.As(err, &qe) && strings.Contains(qe.Desc, "already running") {
		if st, serr := os.Lstat(sock); serr == nil && st.Mode().Type() == os.ModeSocket {
			return nil
		}
		return fmt.Errorf("QEMU's NBD server runs, but not on %s (someone else's?): %w", sock, err)
	}
	return err
}

// DeleteSnapshot removes what a snapshot keeps; a snapshot that is gone, or
// whose QEMU is gone, is not an error.
func (p *qemuPlatform) DeleteSnapshot(ctx context.Context, snap platform.Snapshot) error {
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

// deleteFleece removes exports, jobs, nodes and temporary files of tok,
// skipping what is not there, then stops the NBD server if nothing is
// exported any more.
func (p *qemuPlatform) deleteFleece(ctx context.Context, c *qmp.Client, tok token) error {
	exports := func(ctx context.Context) (map[string]bool, error) { return queryExports(ctx, c) }
	jobs := func(ctx context.Context) (map[string]bool, error) { return queryJobs(ctx, c) }
	for name, fd := range tok.Disks {
		if m, err := exports(ctx); err != nil {
			return err
		} else if m[fd.ExportID] {
			if err := c.Execute(ctx, "block-export-del", map[string]any{"id": fd.ExportID, "mode": "hard"}, nil); err != nil {
				return fmt.Errorf("disk %q: %w", name, err)
			}
		}
		if err := waitGone(ctx, "export", fd.ExportID, exports); err != nil {
			return fmt.Errorf("disk %q: %w", name, err)
		}
		if m, err := jobs(ctx); err != nil {
			return err
		} else if m[fd.Job] {
			if err := c.Execute(ctx, "block-job-cancel", map[string]any{"device": fd.Job, "force": true}, nil); err != nil {
				return fmt.Errorf("disk %q: %w", name, err)
			}
		}
		if err := waitGone(ctx, "job", fd.Job, jobs); err != nil {
			return fmt.Errorf("disk %q: %w", name, err)
		}
		nodes, err := queryNodes(ctx, c)
		if err != nil {
			return err
		}
		if _, ok := nodes[fd.Fleece]; ok {
			if err := c.Execute(ctx, "blockdev-del", map[string]any{"node-name": fd.Fleece}, nil); err != nil {
				return fmt.Errorf("disk %q: %w", name, err)
			}
		}
		if err := os.Remove(fd.Temp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disk %q: %w", name, err)
		}
	}
	left, err := exports(ctx)
	if err != nil {
		return err
	}
	if len(left) == 0 {
		if err := c.Execute(ctx, "nbd-server-stop", nil, nil); err == nil {
			os.Remove(tok.NBD)
		}
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
