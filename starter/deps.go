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
