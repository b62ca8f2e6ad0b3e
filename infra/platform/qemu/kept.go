package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
)

// Kept snapshots (platform.Keeper): the point-in-time image of each disk
// is copied from the snapshot's reader (data extents only, all-zero chunks
// skipped, so the file is sparse) into
//
//	<inventory>/.vmvault-kept/<vm>/<id>/<disk>.raw   (read-only, synced)
//	<inventory>/.vmvault-kept/<vm>/<id>/kept.json    (the KeptSnapshot)
//
// written under .<id>.tmp and renamed into place once every disk is synced,
// so a kept snapshot is whole or absent. The snapshot itself is then
// deleted as usual: a fleecing job kept running would copy every guest
// write into its temporary image for as long as the snapshot is kept.
// A new VM from a kept snapshot has qcow2 overlays backed by these files
// (see NewVMFromKept); a kept snapshot that such a VM uses is not removed.

const (
	keptFolder = ".vmvault-kept"
	keptFile   = "kept.json"
	// keptChunk is the copy unit: all-zero chunks stay holes.
	keptChunk = 4 << 20
)

var validKeptName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

var _ platform.Keeper = (*qemuPlatform)(nil)

// keptDir is where the kept snapshot id of vm lies; names are checked so
// that a payload cannot point it elsewhere.
func (p *qemuPlatform) keptDir(vm, id string) (string, error) {
	if !validKeptName.MatchString(vm) || !validKeptName.MatchString(id) {
		return "", fmt.Errorf("kept snapshot %q of vm %q: bad name: %w", id, vm, platform.ErrKeptGone)
	}
	return filepath.Join(p.root, keptFolder, vm, id), nil
}

// snapshotDisks are the disks a snapshot token covers, sorted.
func snapshotDisks(tok token) ([]string, error) {
	var names []string
	switch tok.Mode {
	case modeFleece:
		for n := range tok.Disks {
			names = append(names, n)
		}
	case modeLocal:
		for n := range tok.Local {
			names = append(names, n)
		}
	case modeStopped:
		var it struct {
			Disks map[string]json.RawMessage `json:"disks"`
		}
		if err := json.Unmarshal([]byte(tok.Images), &it); err != nil {
			return nil, err
		}
		for n := range it.Disks {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Keep copies the point-in-time image of every disk of snap into the kept
// folder (see above). A retry after success returns the same kept snapshot.
func (p *qemuPlatform) Keep(ctx context.Context, snap platform.Snapshot, id string, expires time.Time) (platform.KeptSnapshot, error) {
	dir, err := p.keptDir(snap.VM, id)
	if err != nil {
		return platform.KeptSnapshot{}, err
	}
	if k, err := readKept(dir); err == nil {
		return k, nil
	}
	tok, err := parseToken(snap)
	if err != nil {
		return platform.KeptSnapshot{}, err
	}
	disks, err := snapshotDisks(tok)
	if err != nil || len(disks) == 0 {
		return platform.KeptSnapshot{}, fmt.Errorf("keep snapshot %q of vm %q: no disks in its token (%v)", snap.ID, snap.VM, err)
	}
	removeStale(filepath.Join(filepath.Dir(dir), ".*.tmp"))
	tmp := filepath.Join(filepath.Dir(dir), "."+id+".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return platform.KeptSnapshot{}, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return platform.KeptSnapshot{}, err
	}
	k := platform.KeptSnapshot{VM: snap.VM, ID: id, Paths: map[string]string{}, Sizes: map[string]int64{},
		Created: time.Now().UTC(), Expires: expires.UTC()}
	for _, d := range disks {
		size, err := p.keepDisk(ctx, snap, d, filepath.Join(tmp, d+".raw"))
		if err != nil {
			os.RemoveAll(tmp)
			return platform.KeptSnapshot{}, fmt.Errorf("keep snapshot %q of vm %q: disk %q: %w", snap.ID, snap.VM, d, err)
		}
		k.Paths[d], k.Sizes[d] = filepath.Join(dir, d+".raw"), size
	}
	if err := writeFileAtomic(filepath.Join(tmp, keptFile), k); err == nil {
		err = syncDir(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err == nil {
		err = syncDir(filepath.Dir(dir))
	}
	if err != nil {
		os.RemoveAll(tmp)
		return platform.KeptSnapshot{}, fmt.Errorf("keep snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	return k, nil
}

// keepDisk copies one disk of snap into the sparse file path, synced and
// made read-only.
func (p *qemuPlatform) keepDisk(ctx context.Context, snap platform.Snapshot, disk, path string) (int64, error) {
	r, err := p.OpenDisk(ctx, snap, disk)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	ext, err := r.DataExtents(ctx)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscallNoFollow, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Truncate(r.Size()); err != nil {
		return 0, err
	}
	buf := make([]byte, keptChunk)
	zero := make([]byte, keptChunk)
	for _, e := range ext {
		for off := e.Offset; off < e.Offset+e.Length; off += keptChunk {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			n := min(int64(keptChunk), e.Offset+e.Length-off)
			if _, err := r.ReadAt(buf[:n], off); err != nil {
				return 0, fmt.Errorf("read at %d: %w", off, err)
			}
			if bytes.Equal(buf[:n], zero[:n]) {
				continue
			}
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return 0, err
			}
		}
	}
	if err := r.Verify(ctx); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Chmod(0o444); err != nil {
		return 0, err
	}
	return r.Size(), f.Close()
}

func readKept(dir string) (platform.KeptSnapshot, error) {
	var k platform.KeptSnapshot
	data, err := readSmall(filepath.Join(dir, keptFile))
	if err != nil {
		return k, err
	}
	if err := json.Unmarshal(data, &k); err != nil {
		return k, fmt.Errorf("%s: %w", filepath.Join(dir, keptFile), err)
	}
	return k, nil
}

// ListKept lists the kept snapshots of the inventory; unreadable ones are
// named in the error.
func (p *qemuPlatform) ListKept(ctx context.Context) ([]platform.KeptSnapshot, error) {
	files, err := filepath.Glob(filepath.Join(p.root, keptFolder, "*", "*", keptFile))
	if err != nil {
		return nil, err
	}
	var (
		out  []platform.KeptSnapshot
		errs []error
	)
	for _, f := range files {
		dir := filepath.Dir(f)
		if strings.HasPrefix(filepath.Base(dir), ".") {
			continue // being written
		}
		k, err := readKept(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if want, err := p.keptDir(k.VM, k.ID); err != nil || want != dir {
			errs = append(errs, fmt.Errorf("%s: names vm %q id %q, not this folder", f, k.VM, k.ID))
			continue
		}
		out = append(out, k)
	}
	return out, errors.Join(errs...)
}

// RemoveKept removes a kept snapshot unless a VM's disks are overlays on it
// (platform.ErrKeptInUse, naming them).
func (p *qemuPlatform) RemoveKept(ctx context.Context, k platform.KeptSnapshot) error {
	dir, err := p.keptDir(k.VM, k.ID)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	users, err := p.keptUsers(ctx, dir)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("kept snapshot %s of vm %s: the disks of vm %s are overlays on it (copy them out with qemu-img convert, or remove the vm, to let it go): %w",
			k.ID, k.VM, strings.Join(users, ", "), platform.ErrKeptInUse)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove kept snapshot %s of vm %s: %w", k.ID, k.VM, err)
	}
	os.Remove(filepath.Dir(dir)) // the vm's folder, once empty
	return nil
}

// keptUsers are the inventory VMs with a disk whose backing chain reads a
// file of dir.
func (p *qemuPlatform) keptUsers(ctx context.Context, dir string) ([]string, error) {
	vms, _ := p.vms.ListVMs(ctx) // a broken vm.json cannot name a backing file
	var users []string
	for _, vm := range vms {
		for _, d := range vm.Disks {
			if d.Format != "qcow2" {
				continue
			}
			chain, _, err := backingChain(ctx, filepath.Join(p.vmDir(vm.Name), d.File), d.Format)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				continue // an unreadable chain: QEMU could not read it either
			}
			if slicesAnyUnder(chain[1:], dir) {
				users = append(users, vm.Name)
				break
			}
		}
	}
	return users, nil
}

func slicesAnyUnder(paths []string, dir string) bool {
	for _, f := range paths {
		if rel, err := filepath.Rel(dir, f); err == nil && filepath.IsLocal(rel) {
			return true
		}
	}
	return false
}

// staleAfter is when a hidden build folder (a Keep's, an instant VM's) is
// one a crash left: no job runs longer than its 24-hour limit.
const staleAfter = 25 * time.Hour

// removeStale removes the folders pattern matches that last changed more
// than staleAfter ago.
func removeStale(pattern string) {
	m, _ := filepath.Glob(pattern)
	for _, f := range m {
		if st, err := os.Lstat(f); err == nil && st.IsDir() && time.Since(st.ModTime()) > staleAfter {
			os.RemoveAll(f)
		}
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
