package main

import (
	"context"
	"strings"

	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

// The only place the CLI opens a vault or its storage: the storage
// backends it knows, and how a vault URL picks one, stay here.

// openVault opens the configured vault with the configured key.
func openVault(ctx context.Context, cfg config.Config) (*vault.Vault, error) {
	return cfg.OpenVault(ctx)
}

// initVault creates a new vault where cfg.Vault points, first creating the
// bucket of an s3:// vault if it is missing.
func initVault(ctx context.Context, cfg config.Config, opt vault.InitOptions) (*vault.Vault, error) {
	secret, err := cfg.Secret()
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(cfg.Vault, "s3://") {
		if err := s3.EnsureBucket(ctx, cfg.S3()); err != nil {
			return nil, err
		}
	}
	be, err := cfg.Storage(ctx)
	if err != nil {
		return nil, err
	}
	return vault.Init(ctx, be, secret, opt)
}
