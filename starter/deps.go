package main

import (
	"context"

	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/wire"
)

// The only place the CLI opens a vault or its storage: which backends exist
// and how a vault URL picks one is the composition root's (infra/wire).

// openVault opens the configured vault with the configured key.
func openVault(ctx context.Context, cfg config.Config) (*vault.Vault, error) {
	return wire.OpenVault(ctx, cfg)
}

// initVault creates a new vault where cfg.Vault points, first creating its
// container (an S3 bucket) when the backend needs one.
func initVault(ctx context.Context, cfg config.Config, opt vault.InitOptions) (*vault.Vault, error) {
	return wire.InitVault(ctx, cfg, opt)
}

// openSecondaryVault opens the vault's copy at the secondary location with
// the vault key: for rp list and stats when the primary is gone.
func openSecondaryVault(ctx context.Context, a *app) (*vault.Vault, error) {
	if a.cfg.SecondaryVault == "" {
		return nil, wire.ErrNoSecondary
	}
	return wire.OpenSecondaryVault(ctx, a.cfg)
}

// openVaultOrSecondary opens the vault, or its secondary copy when the
// command was given --from-secondary.
func (a *app) openVaultOrSecondary(ctx context.Context) (*vault.Vault, error) {
	if a.fromSecondary {
		return openSecondaryVault(ctx, a)
	}
	return openVault(ctx, a.cfg)
}
