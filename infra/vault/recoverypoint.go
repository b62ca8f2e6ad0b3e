package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// BackupType says whether a recovery point had a parent to compare with.
// Either way the recovery point is a synthetic full.
type BackupType string

const (
	BackupFull        BackupType = "full"
	BackupIncremental BackupType = "incremental"
)

// DiskRecord is one disk of a recovery point.
type DiskRecord struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	LUN       int       `json:"lun,omitempty"`
	SizeBytes int64     `json:"size_bytes"`
	Root      ID        `json:"root"`
	Method    Method    `json:"method"`
	Stats     DiskStats `json:"stats"`
}

// RecoveryPoint is an immutable manifest: everything needed to restore a VM
// as it was. Every recovery point is a synthetic full: its trees name every
// block, so a restore never walks a chain of incrementals.
type RecoveryPoint struct {
	ID          string     `json:"id"`
	VM          string     `json:"vm"`
	Host        string     `json:"host"`
	Type        BackupType `json:"type"`
	Consistency string     `json:"consistency"`
	Parent      string     `json:"parent,omitempty"`
	StartedAt   time.Time  `json:"started_at"`
	CompletedAt time.Time  `json:"completed_at"`
	Job         string     `json:"job"`
	// Metadata is the VM's description as the platform gave it (JSON), so a
	// restore can recreate the VM.
	Metadata []byte `json:"metadata"`
	// SnapshotToken is the platform's token of the snapshot the point was
	// made from: the next backup asks the platform for the blocks changed
	// since it (changed-block tracking).
	SnapshotToken string       `json:"snapshot_token,omitempty"`
	Disks         []DiskRecord `json:"disks"`
	// Kept is the point-in-time image the backup kept on its host (backup
	// --keep-snapshot), if any; points written before it existed have none.
	Kept *KeptSnapshot `json:"kept,omitempty"`
}

// Totals sums the disks' stats.
func (rp RecoveryPoint) Totals() DiskStats {
	var s DiskStats
	for _, d := range rp.Disks {
		s.Add(d.Stats)
	}
	return s
}

// Ref is "<vm>/<id>", the name operators use for a recovery point.
func (rp RecoveryPoint) Ref() string { return rp.VM + "/" + rp.ID }

func checkName(kind, s string) error {
	if s == "" || strings.ContainsAny(s, "/\\") || s == "." || s == ".." {
		return fmt.Errorf("invalid %s name %q", kind, s)
	}
	return nil
}

// SaveRecoveryPoint writes a recovery point. Call it only after every disk
// backup it names has finished: then all its data is durable.
func (v *Vault) SaveRecoveryPoint(ctx context.Context, rp RecoveryPoint) error {
	if err := checkName("vm", rp.VM); err != nil {
		return err
	}
	if err := checkName("recovery point", rp.ID); err != nil {
		return err
	}
	idx, err := v.Index(ctx)
	if err != nil {
		return err
	}
	for _, d := range rp.Disks {
		if _, ok, err := v.locate(ctx, idx, d.Root); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("recovery point %s: disk %s: root %s: %w", rp.Ref(), d.Name, d.Root.Short(), ErrMissing)
		}
	}
	return v.putSealed(ctx, format.RecoveryPointKey(rp.VM, rp.ID), rp)
}

// LoadRecoveryPoint reads a recovery point by "<vm>/<id>" or by id alone.
// A soft-deleted point is an error (matching ErrSoftDeleted and
// ErrNoRecoveryPoint) that says when it was deleted and until when it can
// be undeleted.
func (v *Vault) LoadRecoveryPoint(ctx context.Context, ref string) (RecoveryPoint, error) {
	vm, id, err := v.resolveRef(ctx, ref)
	if err != nil {
		return RecoveryPoint{}, err
	}
	if dp, err := v.loadTombstone(ctx, vm, id); err == nil {
		return RecoveryPoint{}, deletedError{dp}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return RecoveryPoint{}, err
	}
	rp, err := v.getRecoveryPoint(ctx, format.RecoveryPointKey(vm, id))
	if errors.Is(err, storage.ErrNotFound) {
		return rp, fmt.Errorf("recovery point %s in %s: %w", ref, v.be.Location(), ErrNoRecoveryPoint)
	}
	return rp, err
}

// getRecoveryPoint reads and decodes the manifest at key.
func (v *Vault) getRecoveryPoint(ctx context.Context, key string) (RecoveryPoint, error) {
	var raw json.RawMessage
	if err := v.getSealed(ctx, key, &raw); err != nil {
		return RecoveryPoint{}, err
	}
	rp, err := decodeRecoveryPoint(key, raw)
	if err != nil {
		return RecoveryPoint{}, fmt.Errorf("%s in %s: %w", key, v.be.Location(), err)
	}
	return rp, nil
}

// decodeRecoveryPoint decodes the plaintext of the manifest at key: it must
// name the VM and id of its key, and valid disks.
func decodeRecoveryPoint(key string, data []byte) (RecoveryPoint, error) {
	var rp RecoveryPoint
	if err := json.Unmarshal(data, &rp); err != nil {
		return RecoveryPoint{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if format.RecoveryPointKey(rp.VM, rp.ID) != key || checkName("vm", rp.VM) != nil || checkName("recovery point", rp.ID) != nil {
		return RecoveryPoint{}, fmt.Errorf("%w: manifest names %q/%q", ErrCorrupt, rp.VM, rp.ID)
	}
	for _, d := range rp.Disks {
		if d.SizeBytes < 0 || d.Root.IsZero() {
			return RecoveryPoint{}, fmt.Errorf("%w: disk %q: size %d, root %s", ErrCorrupt, d.Name, d.SizeBytes, d.Root.Short())
		}
	}
	return rp, nil
}

// ListRecoveryPoints returns the VM's recovery points, oldest first; with
// vm == "" those of every VM. Soft-deleted points are not listed (see
// ListDeleted), even while an interrupted delete left their manifest. Manifests that fail to authenticate or decode
// are left out and reported in the error (wrapping ErrCorrupt), next to the
// good ones.
func (v *Vault) ListRecoveryPoints(ctx context.Context, vm string) ([]RecoveryPoint, error) {
	if vm != "" {
		if err := checkName("vm", vm); err != nil {
			return nil, err
		}
	}
	good, bad, err := v.loadRecoveryPoints(ctx, format.VMPrefix(format.KindRecoveryPoint, vm))
	if err != nil {
		return nil, err
	}
	deleted, err := v.deletedSet(ctx, format.VMPrefix(format.KindTombstone, vm))
	if err != nil {
		return nil, err
	}
	live := good[:0]
	for _, rp := range good {
		if !deleted[rp.Ref()] {
			live = append(live, rp)
		}
	}
	good = live
	errs := make([]error, len(bad))
	for i, b := range bad {
		errs[i] = b.err
	}
	return good, errors.Join(errs...)
}

// ManifestProblem is a recovery point manifest that does not authenticate
// or decode.
type ManifestProblem struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
	err    error
}

// loadRecoveryPoints reads the manifests under prefix, oldest first; those
// that fail to authenticate or decode are returned apart.
func (v *Vault) loadRecoveryPoints(ctx context.Context, prefix string) ([]RecoveryPoint, []ManifestProblem, error) {
	var keys []string
	if err := v.be.List(ctx, prefix, func(key string, _ int64) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list recovery points in %s: %w", v.be.Location(), err)
	}
	sort.Strings(keys)
	rps := make([]RecoveryPoint, len(keys))
	bad := make([]error, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, key := range keys {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return context.Cause(gctx) // stop promptly after the first error
			}
			var err error
			rps[i], err = v.getRecoveryPoint(gctx, key)
			if errors.Is(err, ErrCorrupt) {
				bad[i] = err // one bad manifest must not hide the others
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	good := rps[:0]
	var problems []ManifestProblem
	for i := range rps {
		if bad[i] == nil {
			good = append(good, rps[i])
		} else {
			problems = append(problems, ManifestProblem{Key: keys[i], Reason: bad[i].Error(), err: bad[i]})
		}
	}
	sort.Slice(good, func(i, j int) bool {
		if !good[i].StartedAt.Equal(good[j].StartedAt) {
			return good[i].StartedAt.Before(good[j].StartedAt)
		}
		return good[i].ID < good[j].ID
	})
	return good, problems, nil
}

// Usage is what the vault's objects take in storage.
type Usage struct {
	Packs          int   `json:"packs"`
	PackBytes      int64 `json:"pack_bytes"`
	IndexBytes     int64 `json:"index_bytes"`
	RecoveryPoints int   `json:"recovery_points"`
	ManifestBytes  int64 `json:"manifest_bytes"`
	TotalBytes     int64 `json:"total_bytes"`
}

// Usage lists the vault's objects and adds up their sizes.
func (v *Vault) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	err := v.be.List(ctx, "", func(key string, size int64) error {
		u.TotalBytes += size
		switch format.KindOf(key) {
		case format.KindPack:
			u.Packs++
			u.PackBytes += size
		case format.KindIndex:
			u.IndexBytes += size
		case format.KindRecoveryPoint:
			u.RecoveryPoints++
			u.ManifestBytes += size
		}
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("usage of %s: %w", v.be.Location(), err)
	}
	return u, nil
}
