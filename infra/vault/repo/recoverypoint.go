package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// SaveRecoveryPoint writes a recovery point. Call it only after every disk
// backup it names has finished: then all its data is durable.
func (v *Repo) SaveRecoveryPoint(ctx context.Context, rp format.RecoveryPoint) error {
	if err := format.CheckName("vm", rp.VM); err != nil {
		return err
	}
	if err := format.CheckName("recovery point", rp.ID); err != nil {
		return err
	}
	idx, err := v.Index(ctx)
	if err != nil {
		return err
	}
	for _, d := range rp.Disks {
		if _, ok, err := v.Locate(ctx, idx, d.Root); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("recovery point %s: disk %s: root %s: %w", rp.Ref(), d.Name, d.Root.Short(), format.ErrMissing)
		}
	}
	return v.PutSealed(ctx, format.RecoveryPointKey(rp.VM, rp.ID), rp)
}

// LoadRecoveryPoint reads a recovery point by "<vm>/<id>" or by id alone.
// A soft-deleted point is an error (matching ErrSoftDeleted and
// ErrNoRecoveryPoint) that says when it was deleted and until when it can
// be undeleted.
func (v *Repo) LoadRecoveryPoint(ctx context.Context, ref string) (format.RecoveryPoint, error) {
	vm, id, err := v.ResolveRef(ctx, ref)
	if err != nil {
		return format.RecoveryPoint{}, err
	}
	if dp, err := v.LoadTombstone(ctx, vm, id); err == nil {
		return format.RecoveryPoint{}, format.DeletedError{Point: dp}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return format.RecoveryPoint{}, err
	}
	rp, err := v.GetRecoveryPoint(ctx, format.RecoveryPointKey(vm, id))
	if errors.Is(err, storage.ErrNotFound) {
		return rp, fmt.Errorf("recovery point %s in %s: %w", ref, v.be.Location(), format.ErrNoRecoveryPoint)
	}
	return rp, err
}

// GetRecoveryPoint reads and decodes the manifest at key.
func (v *Repo) GetRecoveryPoint(ctx context.Context, key string) (format.RecoveryPoint, error) {
	var raw json.RawMessage
	if err := v.GetSealed(ctx, key, &raw); err != nil {
		return format.RecoveryPoint{}, err
	}
	rp, err := format.DecodeRecoveryPoint(key, raw)
	if err != nil {
		return format.RecoveryPoint{}, fmt.Errorf("%s in %s: %w", key, v.be.Location(), err)
	}
	return rp, nil
}

// ListRecoveryPoints returns the VM's recovery points, oldest first; with
// vm == "" those of every VM. Soft-deleted points are not listed (see
// ListDeleted), even while an interrupted delete left their manifest. Manifests that fail to authenticate or decode
// are left out and reported in the error (wrapping ErrCorrupt), next to the
// good ones.
func (v *Repo) ListRecoveryPoints(ctx context.Context, vm string) ([]format.RecoveryPoint, error) {
	if vm != "" {
		if err := format.CheckName("vm", vm); err != nil {
			return nil, err
		}
	}
	good, bad, err := v.LoadRecoveryPoints(ctx, format.VMPrefix(format.KindRecoveryPoint, vm))
	if err != nil {
		return nil, err
	}
	deleted, err := v.DeletedSet(ctx, format.VMPrefix(format.KindTombstone, vm))
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

// LoadRecoveryPoints reads the manifests under prefix, oldest first; those
// that fail to authenticate or decode are returned apart.
func (v *Repo) LoadRecoveryPoints(ctx context.Context, prefix string) ([]format.RecoveryPoint, []ManifestProblem, error) {
	var keys []string
	if err := v.be.List(ctx, prefix, func(key string, _ int64) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list recovery points in %s: %w", v.be.Location(), err)
	}
	sort.Strings(keys)
	rps := make([]format.RecoveryPoint, len(keys))
	bad := make([]error, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, key := range keys {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return context.Cause(gctx) // stop promptly after the first error
			}
			var err error
			rps[i], err = v.GetRecoveryPoint(gctx, key)
			if errors.Is(err, format.ErrCorrupt) {
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
func (v *Repo) Usage(ctx context.Context) (Usage, error) {
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
