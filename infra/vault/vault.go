package vault

import (
	"context"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// InitOptions tune a new vault; zero values take defaults.
type InitOptions = repo.InitOptions

// Vault is an open vault: the repository (config, keys, storage, index)
// and the pipelines and maintenance that work on it.
type Vault struct {
	*repo.Repo
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

// OnStorage is the same vault on another storage (a replica), checked to
// hold this vault's config.
func (v *Vault) OnStorage(ctx context.Context, be storage.Backend) (*Vault, error) {
	r, err := v.Repo.OnStorage(ctx, be)
	if err != nil {
		return nil, err
	}
	return &Vault{r}, nil
}
