package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/imagelock"
	"github.com/vmvault/vmvault/infra/platform"
)

// token is the images platform's Snapshot.Token: what each image file looked
// like when the snapshot was taken.
type token struct {
	Version int                    `json:"v"`
	Disks   map[string]fingerprint `json:"disks"`
}

type fingerprint struct {
	File    string `json:"file"` // relative to the vm folder
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
	Inode   uint64 `json:"inode"`
}

const tokenVersion = 1

// settle is how old a file's last change must be before its fingerprint is
// trusted: file times come from the kernel's coarse clock (one tick, up to
// 10 ms), so a write in the same tick as the previous one could leave mtime
// and ctime unchanged. Waiting out two ticks makes any later write move them.
const settle = 30 * time.Millisecond

func (p *images) CreateSnapshot(ctx context.Context, name string, req platform.SnapshotRequest) (platform.Snapshot, error) {
	dir, err := p.openVMDir(name)
	if err != nil {
		return platform.Snapshot{}, err
	}
	defer dir.Close()
	vm, err := p.readConfigIn(dir, name)
	if err == nil {
		err = p.checkFiles(dir, &vm)
	}
	if err != nil {
		return platform.Snapshot{}, err
	}
	if vm.Power != platform.PowerStopped {
		return platform.Snapshot{}, fmt.Errorf("images platform cannot snapshot running vm %q (%s says %s); stop it or use the qemu platform: %w",
			name, filepath.Join(p.vmDir(name), ConfigFile), vm.Power, platform.ErrVMRunning)
	}
	tok := token{Version: tokenVersion, Disks: map[string]fingerprint{}}
	for _, d := range vm.Disks {
		if d.Role == platform.DiskTemp {
			continue
		}
		if d.Format != formatRaw {
			return platform.Snapshot{}, fmt.Errorf("snapshot vm %q: disk %q is %s: %w (images platform reads raw images only)", name, d.Name, d.Format, platform.ErrNotSupported)
		}
		fp, err := p.diskFingerprint(ctx, dir, name, d)
		if err != nil {
			return platform.Snapshot{}, err
		}
		tok.Disks[d.Name] = fp
	}
	data, err := json.Marshal(tok)
	if err != nil {
		return platform.Snapshot{}, err
	}
	notes := []string{"vm is stopped: storage snapshot, crash-consistent (the images platform has no guest agent to quiesce with; a cleanly shut down guest is consistent on disk)"}
	if req.Consistency != "" && req.Consistency != platform.CrashConsistent {
		notes = append(notes, fmt.Sprintf("%s was asked for; a stopped vm cannot be quiesced", req.Consistency))
	}
	// Nothing is copied or kept, so the same request gives the same
	// snapshot as long as the disks are unchanged: retries are harmless.
	return platform.Snapshot{
		ID:          req.ID,
		VM:          name,
		Consistency: platform.CrashConsistent,
		Notes:       notes,
		Token:       string(data),
	}, nil
}

// diskFingerprint opens the image of d beneath the vm folder, checks that
// nobody writes it and fingerprints it once settled.
func (p *images) diskFingerprint(ctx context.Context, dir *os.File, vm string, d platform.Disk) (fingerprint, error) {
	f, err := p.openImage(dir, vm, d, unix.O_RDONLY)
	if err != nil {
		return fingerprint{}, err
	}
	defer f.Close()
	if err := checkLock(f, vm, d.Name); err != nil {
		return fingerprint{}, err
	}
	fp, err := settledFingerprint(ctx, f)
	if err != nil {
		return fingerprint{}, fmt.Errorf("snapshot vm %q disk %q: %w", vm, d.Name, err)
	}
	fp.File = d.File
	return fp, nil
}

func checkLock(f *os.File, vm, disk string) error {
	if err := imagelock.CheckFile(f, f.Name()); err != nil {
		return fmt.Errorf("vm %q disk %q: %w", vm, disk, err)
	}
	return nil
}

// settledFingerprint fingerprints f once its last change is older than
// settle (see there).
func settledFingerprint(ctx context.Context, f *os.File) (fingerprint, error) {
	for i := 0; ; i++ {
		fp, err := fingerprintOf(f)
		if err != nil {
			return fingerprint{}, err
		}
		age := time.Since(time.Unix(0, max(fp.MtimeNs, fp.CtimeNs)))
		// A change time in the future (clock steps, touch -d) cannot be
		// reproduced by a later write, so it needs no waiting either.
		if age >= settle || age < -time.Second || i >= 10 {
			return fp, nil
		}
		select {
		case <-ctx.Done():
			return fingerprint{}, ctx.Err()
		case <-time.After(settle - age):
		}
	}
}

func fingerprintOf(f *os.File) (fingerprint, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fingerprint{}, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return fingerprint{
		Size:    st.Size,
		MtimeNs: st.Mtim.Nano(),
		CtimeNs: st.Ctim.Nano(),
		Inode:   st.Ino,
	}, nil
}

func (fp fingerprint) same(o fingerprint) bool {
	return fp.Size == o.Size && fp.MtimeNs == o.MtimeNs && fp.CtimeNs == o.CtimeNs && fp.Inode == o.Inode
}

// DeleteSnapshot has nothing to remove: an images snapshot is a fingerprint.
func (p *images) DeleteSnapshot(ctx context.Context, snap platform.Snapshot) error { return nil }

func (p *images) OpenDisk(ctx context.Context, snap platform.Snapshot, disk string) (platform.DiskReader, error) {
	dir, err := p.openVMDir(snap.VM)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	if err := unix.Fstatat(int(dir.Fd()), ConfigFile, new(unix.Stat_t), unix.AT_SYMLINK_NOFOLLOW); isNotExist(err) {
		return nil, p.notFound(snap.VM)
	}
	var tok token
	if err := json.Unmarshal([]byte(snap.Token), &tok); err != nil || tok.Version != tokenVersion {
		return nil, fmt.Errorf("open disk %q of snapshot %q of vm %q: not an images snapshot token (version %d, %v)", disk, snap.ID, snap.VM, tok.Version, err)
	}
	want, ok := tok.Disks[disk]
	if !ok {
		// Say whether the disk is a temp disk (never backed up) or unknown.
		if vm, err := p.readConfigIn(dir, snap.VM); err == nil {
			for _, d := range vm.Disks {
				if d.Name == disk && d.Role == platform.DiskTemp {
					return nil, fmt.Errorf("open disk %q of vm %q: it is a temp disk, which is never backed up: %w", disk, snap.VM, platform.ErrNotSupported)
				}
			}
		}
		return nil, fmt.Errorf("open disk of vm %q: snapshot %q has no disk %q: %w", snap.VM, snap.ID, disk, platform.ErrInvalidVM)
	}
	if !filepath.IsLocal(want.File) {
		return nil, fmt.Errorf("open disk %q of vm %q: bad file %q in snapshot token", disk, snap.VM, want.File)
	}
	path := filepath.Join(p.vmDir(snap.VM), want.File)
	f, err := p.openImage(dir, snap.VM, platform.Disk{Name: disk, File: want.File}, unix.O_RDONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open disk %q of vm %q: %s is gone: %w", disk, snap.VM, path, platform.ErrDiskChanged)
		}
		return nil, err
	}
	if err := checkLock(f, snap.VM, disk); err != nil {
		f.Close()
		return nil, err
	}
	r := &reader{f: f, vm: snap.VM, disk: disk, path: path, want: want}
	if err := r.Verify(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// reader reads one image file of a snapshot. Its ReadAt is pread, safe for
// concurrent use.
type reader struct {
	f    *os.File
	vm   string
	disk string
	path string
	want fingerprint
}

var _ platform.DiskReader = (*reader)(nil)

func (r *reader) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

func (r *reader) Close() error { return r.f.Close() }

func (r *reader) Size() int64 { return r.want.Size }

func (r *reader) DataExtents(ctx context.Context) ([]extent.Extent, error) {
	ext, err := dataExtents(ctx, r.f, r.want.Size)
	if err != nil {
		return nil, fmt.Errorf("data extents of vm %q disk %q (%s): %w", r.vm, r.disk, r.path, err)
	}
	return ext, nil
}

// ChangedExtents is never known: image files have no changed-block tracking.
// ChangedExtents: images VMs have no changed-block tracking; backups
// compare checksums.
func (r *reader) ChangedExtents(ctx context.Context, sinceToken string) ([]extent.Extent, bool, error) {
	return nil, false, platform.ErrNotSupported
}

// Verify checks the open file, not the path: if the image was replaced by a
// rename, what was read through this reader is still the snapshot's data.
func (r *reader) Verify(ctx context.Context) error {
	got, err := fingerprintOf(r.f)
	if err != nil {
		return fmt.Errorf("verify vm %q disk %q: %w", r.vm, r.disk, err)
	}
	if !got.same(r.want) {
		return fmt.Errorf("vm %q disk %q: %s changed after the snapshot (size %d -> %d, mtime %s -> %s, inode %d -> %d): %w",
			r.vm, r.disk, r.path, r.want.Size, got.Size,
			time.Unix(0, r.want.MtimeNs).UTC().Format(time.RFC3339Nano), time.Unix(0, got.MtimeNs).UTC().Format(time.RFC3339Nano),
			r.want.Inode, got.Inode, platform.ErrDiskChanged)
	}
	return nil
}
