package vault

import (
	"context"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// InitOptions tune a new vault; zero values take defaults.
type InitOptions = repo.InitOptions

// Usage is what a vault's objects take.
type Usage = repo.Usage

// Vault is an open vault as callers see it: its config, recovery points
// and records, the backup and restore of disks, and one entry each to
// maintenance (Maint) and to the repository below (Repo). It composes the
// layers: repo (storage, keys, index, objects), backup, restore, maint and
// replicate.
type Vault struct {
	r *repo.Repo
}

func newVault(be storage.Backend, cfg format.Config, keys *format.Keys) *Vault {
	return &Vault{repo.New(be, cfg, keys)}
}

// Init creates a vault on be, protected by secret. Of concurrent Inits on
// one storage exactly one succeeds; the others return ErrVaultExists.
func Init(ctx context.Context, be storage.Backend, secret []byte, opt InitOptions) (*Vault, error) {
	r, err := repo.Init(ctx, be, secret, opt)
	if err != nil {
		return nil, err
	}
	return &Vault{r}, nil
}

// Open opens the vault on be with secret.
func Open(ctx context.Context, be storage.Backend, secret []byte) (*Vault, error) {
	r, err := repo.Open(ctx, be, secret)
	if err != nil {
		return nil, err
	}
	return &Vault{r}, nil
}

// Repo is the repository under the vault (objects, index, trees), for
// the few callers that need more than the Vault offers.
func (v *Vault) Repo() *repo.Repo { return v.r }

// OnStorage is the same vault on another storage (a replica), checked to
// hold this vault's config.
func (v *Vault) OnStorage(ctx context.Context, be storage.Backend) (*Vault, error) {
	r, err := v.r.OnStorage(ctx, be)
	if err != nil {
		return nil, err
	}
	return &Vault{r}, nil
}

// Config returns the vault's config (without secrets being usable from it).
func (v *Vault) Config() Config { return v.r.Config() }

// Location names the vault's storage, e.g. "s3://bucket/prefix".
func (v *Vault) Location() string { return v.r.Location() }

// Storage is the backend the vault lives on (replication copies it raw).
func (v *Vault) Storage() storage.Backend { return v.r.Storage() }

// ChangeKey rewraps the vault's master key under newSecret (repo.ChangeKey).
func (v *Vault) ChangeKey(ctx context.Context, oldSecret, newSecret []byte, opt KeyOptions) error {
	return v.r.ChangeKey(ctx, oldSecret, newSecret, opt)
}

// ReloadConfig rereads the stored config (immutability set since Open).
func (v *Vault) ReloadConfig(ctx context.Context) error { return v.r.ReloadConfig(ctx) }

// SetImmutable makes the vault immutable for good (repo.SetImmutable).
func (v *Vault) SetImmutable(ctx context.Context, im Immutability) (Immutability, error) {
	return v.r.SetImmutable(ctx, im)
}

// CheckDeletable refuses, on an immutable vault, to delete recovery points
// before they expire.
func (v *Vault) CheckDeletable(ctx context.Context, rps []RecoveryPoint, now time.Time) error {
	return v.r.CheckDeletable(ctx, rps, now)
}

// RefreshIndex brings the vault's index up to date with what other
// processes wrote (repo.RefreshIndex).
func (v *Vault) RefreshIndex(ctx context.Context) (*Index, error) { return v.r.RefreshIndex(ctx) }

// Usage lists the vault's objects and adds up their sizes.
func (v *Vault) Usage(ctx context.Context) (Usage, error) { return v.r.Usage(ctx) }
