package repo

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// General helpers every layer above uses: finding a recovery point by its
// ref, listing and deleting keys, the same vault on another storage.

// ResolveRef turns "<vm>/<id>" or an id into the VM and id, finding the VM
// of a bare id among live and soft-deleted points.
func (v *Repo) ResolveRef(ctx context.Context, ref string) (vm, id string, err error) {
	vm, id, ok := strings.Cut(ref, "/")
	if !ok {
		id = ref
		vms := map[string]bool{}
		for _, prefix := range []string{format.KindRecoveryPoint.Prefix(), format.KindTombstone.Prefix()} {
			if err := v.be.List(ctx, prefix, func(key string, _ int64) error {
				if path.Base(key) == id {
					vms[path.Base(path.Dir(key))] = true
				}
				return nil
			}); err != nil {
				return "", "", fmt.Errorf("find recovery point %s in %s: %w", ref, v.be.Location(), err)
			}
		}
		if len(vms) > 1 {
			names := make([]string, 0, len(vms))
			for vm := range vms {
				names = append(names, vm)
			}
			sort.Strings(names)
			return "", "", fmt.Errorf("recovery point %s in %s is a point of each of vms %s: give VM/ID: %w",
				ref, v.be.Location(), strings.Join(names, ", "), format.ErrNoRecoveryPoint)
		}
		if len(vms) == 0 {
			return "", "", fmt.Errorf("recovery point %s in %s: %w", ref, v.be.Location(), format.ErrNoRecoveryPoint)
		}
		for vm = range vms {
		}
	}
	if format.CheckName("vm", vm) != nil || format.CheckName("recovery point", id) != nil {
		return "", "", fmt.Errorf("recovery point %q: %w", ref, format.ErrNoRecoveryPoint)
	}
	return vm, id, nil
}

// ListKeys lists the keys under prefix, sorted, without the fs backend's
// temp files.
func (v *Repo) ListKeys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	if err := v.be.List(ctx, prefix, func(key string, _ int64) error {
		if !strings.HasPrefix(path.Base(key), ".") { // the fs backend's temp files
			keys = append(keys, key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s in %s: %w", prefix, v.be.Location(), err)
	}
	sort.Strings(keys)
	return keys, nil
}

// DeleteKey deletes key.
func (v *Repo) DeleteKey(ctx context.Context, key string) error {
	if err := v.be.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// OnStorage opens the copy of this vault on another storage (its
// secondary) with the keys already unlocked: the copy's config must be
// this vault's, authenticated by its master key.
func (v *Repo) OnStorage(ctx context.Context, be storage.Backend) (*Repo, error) {
	data, err := be.Get(ctx, format.ConfigKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("open vault at %s: %w (not replicated yet: run 'vmvault vault replicate')", be.Location(), format.ErrNoVault)
	}
	if err != nil {
		return nil, fmt.Errorf("open vault at %s: %w", be.Location(), err)
	}
	cfg, err := format.ParseConfig(be.Location(), data)
	if err != nil {
		return nil, fmt.Errorf("open vault at %s: %w", be.Location(), err)
	}
	if cfg.ID != v.Config().ID || !hmac.Equal(cfg.MAC, cfg.ComputeMAC(v.Keys().Master)) {
		return nil, fmt.Errorf("open vault at %s: %w: it holds vault %s, not a copy of %s", be.Location(), format.ErrCorrupt, cfg.ID, v.Config().ID)
	}
	return New(be, cfg, v.Keys()), nil
}
