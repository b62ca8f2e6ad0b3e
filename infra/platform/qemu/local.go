package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/nbd"
)

// A stopped VM with a qcow2 disk is read through qemu-nbd (Debian's
// qemu-utils): one read-only qemu-nbd per disk, exporting the image on a
// unix socket in the VM folder, read with package nbd like a fleecing
// export (base:allocation gives the holes). qemu-nbd opens the image as
// QEMU does, with QEMU's image locks: it holds the "consistent read"
// permission and shares no "write", so a QEMU that starts meanwhile cannot
// open the image for writing (and qemu-nbd fails, platform.ErrDiskBusy, if
// a QEMU holds it). Writers that ignore the locks are caught by
// fingerprints (size, mtime, ctime, inode) of the image and of every file
// of its backing chain, taken at the snapshot and checked when a disk is
// opened and after it is read (Verify).
//
// qemu-nbd runs as a daemon (--fork, --pid-file): the snapshot outlives the
// activity that took it, and a worker restart. OpenDisk starts it again if
// it is gone (a host reboot) and the fingerprints still match.
// DeleteSnapshot stops it (SIGTERM, after checking that the pid file names
// a qemu-nbd serving that socket) and removes the socket and the pid file;
// it is idempotent. A qemu-nbd that a crashed job left would keep the VM's
// images locked, so each snapshot of a stopped VM first stops every
// qemu-nbd serving a vmvault socket of the VM folder (one backup of a VM
// runs at a time: none of them is in use).
//
// QEMU reads past the end of a truncated image as zeros, so qemu-img check
// runs at the snapshot: a damaged qcow2 fails the backup with an error
// naming the vm, the disk and the file, instead of backing up zeros.

// modeLocal is the token mode of a stopped VM read through qemu-nbd.
const modeLocal = "qemu-nbd"

// localDisk is one disk of a modeLocal snapshot.
type localDisk struct {
	File   string `json:"file"` // relative to the VM folder
	Format string `json:"format"`
	Socket string `json:"socket"` // qemu-nbd's unix socket in the VM folder
	Size   int64  `json:"size"`
	// Files are the fingerprints of the image and its backing files.
	Files []fileprint `json:"files"`
}

type fileprint struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
	Inode   uint64 `json:"inode"`
}

const (
	localPrefix = ".vmvault-nbd-"
	// settle: see images' settle (coarse file times).
	settle = 30 * time.Millisecond
)

// needsLocal reports whether a stopped VM must be read through qemu-nbd:
// the images platform reads raw images only.
func needsLocal(vm platform.VM) bool {
	for _, d := range vm.Disks {
		if d.Role != platform.DiskTemp && d.Format != "raw" && d.Format != "" {
			return true
		}
	}
	return false
}

// localSnapshot starts qemu-nbd on every disk of a stopped VM, checks its
// qcow2 images and fingerprints their files.
func (p *qemuPlatform) localSnapshot(ctx context.Context, vm platform.VM, req platform.SnapshotRequest) (snap platform.Snapshot, err error) {
	tok := p.localPlan(vm, req.ID)
	defer func() {
		if err != nil {
			p.stopLocal(context.WithoutCancel(ctx), vm.Name, tok)
		}
	}()
	if err := sweepQemuNBD(ctx, p.vmDir(vm.Name)); err != nil {
		return snap, fmt.Errorf("snapshot vm %q: stop a qemu-nbd an earlier job left: %w", vm.Name, err)
	}
	var notes []string
	for _, d := range vm.Disks {
		ld, ok := tok.Local[d.Name]
		if !ok {
			continue
		}
		path := filepath.Join(p.vmDir(vm.Name), ld.File)
		if err := startQemuNBD(ctx, path, ld); err != nil {
			return snap, fmt.Errorf("snapshot vm %q disk %q (%s): %w", vm.Name, d.Name, path, err)
		}
		if ld.Format == "qcow2" {
			note, err := checkImage(ctx, path)
			if err != nil {
				return snap, fmt.Errorf("snapshot vm %q disk %q: %s: %w", vm.Name, d.Name, path, err)
			}
			if note != "" {
				notes = append(notes, fmt.Sprintf("disk %s: %s", d.Name, note))
			}
		}
		chain, size, err := backingChain(ctx, path, ld.Format)
		if err != nil {
			return snap, fmt.Errorf("snapshot vm %q disk %q: %s: %w", vm.Name, d.Name, path, err)
		}
		ld.Size = size
		ld.Files = nil
		for _, f := range chain {
			fp, err := settledPrint(ctx, f)
			if err != nil {
				return snap, fmt.Errorf("snapshot vm %q disk %q: %w", vm.Name, d.Name, err)
			}
			ld.Files = append(ld.Files, fp)
		}
		if len(chain) > 1 {
			notes = append(notes, fmt.Sprintf("disk %s: read through its backing chain (%s)", d.Name, strings.Join(chain[1:], " <- ")))
		}
		tok.Local[d.Name] = ld
	}
	data, err := json.Marshal(tok)
	if err != nil {
		return snap, err
	}
	notes = append([]string{"vm is stopped: its qcow2 images are read through qemu-nbd (read-only, holding QEMU's image lock so the vm cannot start writing them meanwhile), crash-consistent"}, notes...)
	if req.Consistency != "" && req.Consistency != platform.CrashConsistent {
		notes = append(notes, fmt.Sprintf("%s was asked for; a stopped vm cannot be quiesced", req.Consistency))
	}
	return platform.Snapshot{ID: req.ID, VM: vm.Name, Consistency: platform.CrashConsistent, Notes: notes, Token: string(data)}, nil
}

// localPlan names the qemu-nbd sockets of snapshot id of a stopped VM,
// from the id alone (so a snapshot whose token never came back can be
// deleted, see deletePlanned).
func (p *qemuPlatform) localPlan(vm platform.VM, id string) token {
	h := snapHash(vm.Name, id)
	tok := token{Version: tokenVersion, Mode: modeLocal, Local: map[string]localDisk{}}
	for i, d := range vm.Disks {
		if d.Role == platform.DiskTemp {
			continue
		}
		tok.Local[d.Name] = localDisk{
			File: d.File, Format: d.Format, Size: d.SizeBytes,
			Socket: filepath.Join(p.vmDir(vm.Name), fmt.Sprintf("%s%s-%d.sock", localPrefix, h, i)),
		}
	}
	return tok
}

// checkLocalPaths refuses a token whose sockets are not vmvault's own in
// the VM folder or whose files are not beneath it: a payload is not
// trusted with what to stop, serve or delete.
func (p *qemuPlatform) checkLocalPaths(vm string, tok token) error {
	dir := p.vmDir(vm)
	for name, ld := range tok.Local {
		base := filepath.Base(ld.Socket)
		if filepath.Dir(ld.Socket) != dir || !strings.HasPrefix(base, localPrefix) || !strings.HasSuffix(base, ".sock") {
			return fmt.Errorf("vm %q disk %q: snapshot token names socket %s, not a qemu-nbd socket of the vm folder", vm, name, ld.Socket)
		}
		if !filepath.IsLocal(ld.File) || (ld.Format != "raw" && ld.Format != "qcow2") {
			return fmt.Errorf("vm %q disk %q: snapshot token names image %q (%s)", vm, name, ld.File, ld.Format)
		}
	}
	return nil
}

// stopLocal stops every qemu-nbd of a snapshot and removes its files.
func (p *qemuPlatform) stopLocal(ctx context.Context, vm string, tok token) error {
	var errs []error
	for name, ld := range tok.Local {
		if err := stopQemuNBD(ctx, ld.Socket); err != nil {
			errs = append(errs, fmt.Errorf("vm %q disk %q: %w", vm, name, err))
		}
	}
	return errors.Join(errs...)
}

func (p *qemuPlatform) deleteLocal(ctx context.Context, snap platform.Snapshot, tok token) error {
	if err := p.checkLocalPaths(snap.VM, tok); err != nil {
		return err
	}
	if err := p.stopLocal(ctx, snap.VM, tok); err != nil {
		return fmt.Errorf("delete snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	return nil
}

// openLocal opens one disk of a modeLocal snapshot: the files must be as
// they were, and a qemu-nbd that is gone is started again.
func (p *qemuPlatform) openLocal(ctx context.Context, snap platform.Snapshot, tok token, disk string) (platform.DiskReader, error) {
	if err := p.checkLocalPaths(snap.VM, tok); err != nil {
		return nil, err
	}
	ld, ok := tok.Local[disk]
	if !ok {
		if vm, err := p.vms.DescribeVM(ctx, snap.VM); err == nil {
			if d, ok := findDisk(vm, disk); ok && d.Role == platform.DiskTemp {
				return nil, fmt.Errorf("open disk %q of vm %q: it is a temp disk, which is never backed up: %w", disk, snap.VM, platform.ErrNotSupported)
			}
		}
		return nil, fmt.Errorf("open disk of vm %q: snapshot %q has no disk %q: %w", snap.VM, snap.ID, disk, platform.ErrInvalidVM)
	}
	lr := &localReader{reader: &reader{vm: snap.VM, disk: disk, sock: ld.Socket, d: fleeceDisk{Size: ld.Size}, pool: make(chan *nbd.Conn, readConns)}, ld: ld}
	lr.opt = nbd.Options{MetaContexts: []string{nbd.BaseAllocation}}
	if err := lr.Verify(ctx); err != nil {
		return nil, err
	}
	c, err := lr.dial(ctx)
	if err != nil && ctx.Err() == nil && len(qemuNBDPids(ld.Socket)) == 0 {
		// qemu-nbd is gone (a reboot, a killed worker's cgroup): the files
		// are unchanged, so serving them again serves the snapshot.
		path := filepath.Join(p.vmDir(snap.VM), ld.File)
		if serr := startQemuNBD(ctx, path, ld); serr != nil {
			return nil, fmt.Errorf("open disk %q of vm %q: restart qemu-nbd on %s: %w", disk, snap.VM, path, serr)
		}
		c, err = lr.dial(ctx)
	}
	if err != nil {
		return nil, err
	}
	if c.Size() != ld.Size {
		lr.Close()
		return nil, fmt.Errorf("open disk %q of vm %q: export is %d bytes, the snapshot %d: %w", disk, snap.VM, c.Size(), ld.Size, platform.ErrDiskChanged)
	}
	lr.pool <- c
	return lr, nil
}

// localReader reads a disk served by qemu-nbd: the fleecing reader over
// another socket, without changed-block tracking, verified by fingerprints.
type localReader struct {
	*reader
	ld localDisk
}

var _ platform.DiskReader = (*localReader)(nil)

// ChangedExtents: a stopped VM's snapshot has no bitmap chain; backups
// compare checksums.
func (r *localReader) ChangedExtents(ctx context.Context, sinceToken string) ([]extent.Extent, bool, error) {
	return nil, false, platform.ErrNotSupported
}

// Verify checks that no file of the disk's chain changed since the snapshot.
func (r *localReader) Verify(ctx context.Context) error {
	for _, want := range r.ld.Files {
		got, err := printOf(want.Path)
		if err != nil {
			return fmt.Errorf("vm %q disk %q: %s: %v: %w", r.vm, r.disk, want.Path, err, platform.ErrDiskChanged)
		}
		if got != want {
			return fmt.Errorf("vm %q disk %q: %s changed after the snapshot (size %d -> %d, mtime %s -> %s, inode %d -> %d): %w",
				r.vm, r.disk, want.Path, want.Size, got.Size,
				time.Unix(0, want.MtimeNs).UTC().Format(time.RFC3339Nano), time.Unix(0, got.MtimeNs).UTC().Format(time.RFC3339Nano),
				want.Inode, got.Inode, platform.ErrDiskChanged)
		}
	}
	return nil
}

func printOf(path string) (fileprint, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fileprint{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileprint{}, fmt.Errorf("%s is not a regular file", path)
	}
	return fileprint{Path: path, Size: st.Size, MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(), Inode: st.Ino}, nil
}

// settledPrint fingerprints path once its last change is older than
// settle, so that any later write moves its times.
func settledPrint(ctx context.Context, path string) (fileprint, error) {
	for i := 0; ; i++ {
		fp, err := printOf(path)
		if err != nil {
			return fp, err
		}
		age := time.Since(time.Unix(0, max(fp.MtimeNs, fp.CtimeNs)))
		if age >= settle || age < -time.Second || i >= 10 {
			return fp, nil
		}
		select {
		case <-ctx.Done():
			return fp, ctx.Err()
		case <-time.After(settle - age):
		}
	}
}
