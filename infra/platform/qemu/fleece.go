package qemu

// Fleecing: how a running VM's point-in-time image is made and unmade. Each
// disk gets a temporary qcow2 node that copy-before-write fills with the
// old contents of every block the guest overwrites, so the fleecing node
// reads the disk as it was at the snapshot; QEMU's NBD server exports it
// (and the disk's frozen dirty bitmap) to the worker. snapshot.go decides
// when to fleece; this file does it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

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
