package wire

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

// ErrNoSecondary is returned when VMVAULT_SECONDARY_VAULT is not set.
var ErrNoSecondary = errors.New("no secondary vault configured (set VMVAULT_SECONDARY_VAULT)")

// SecondaryStorage returns the backends of this build for the secondary
// location: S3 settings from the VMVAULT_SECONDARY_ variables, each
// defaulting to the primary's, and the secondary's own static credentials
// when both are set (else the AWS default chain, like the primary).
func SecondaryStorage(c config.Config) *storage.Registry {
	r := &storage.Registry{}
	r.Register("file", fs.Open)
	r.Register("s3", func(ctx context.Context, u *url.URL) (storage.Backend, error) {
		if u.Host == "" {
			return nil, fmt.Errorf("no bucket (want s3://bucket/prefix)")
		}
		sc := s3.Config{
			Endpoint: c.S3Endpoint, Region: c.S3Region, PathStyle: c.S3PathStyle,
			Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"),
			AccessKeyID: c.SecondaryAccessKeyID, SecretAccessKey: c.SecondarySecretAccessKey,
		}
		if c.SecondaryS3Endpoint != "" {
			sc.Endpoint = c.SecondaryS3Endpoint
		}
		if c.SecondaryS3Region != "" {
			sc.Region = c.SecondaryS3Region
		}
		if c.SecondaryS3PathStyle != nil {
			sc.PathStyle = *c.SecondaryS3PathStyle
		}
		return s3.New(ctx, sc)
	})
	return r
}

// OpenSecondaryStorage opens the configured secondary location, creating
// its container (an S3 bucket) if it is missing: replication fills it.
func OpenSecondaryStorage(ctx context.Context, c config.Config) (storage.Backend, error) {
	if c.SecondaryVault == "" {
		return nil, ErrNoSecondary
	}
	be, err := SecondaryStorage(c).Open(ctx, c.SecondaryVault)
	if err != nil {
		return nil, fmt.Errorf("secondary %w", err)
	}
	return be, nil
}

// ProvisionSecondary creates the secondary's bucket if it is missing.
func ProvisionSecondary(ctx context.Context, be storage.Backend) error {
	if p, ok := be.(storage.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			return fmt.Errorf("secondary %s: %w", be.Location(), err)
		}
	}
	return nil
}

// OpenSecondaryVault opens the vault's copy at the secondary location with
// the configured key (the same as the primary's): for restores and checks
// when the primary is gone.
func OpenSecondaryVault(ctx context.Context, c config.Config) (*vault.Vault, error) {
	secret, err := c.Secret()
	if err != nil {
		return nil, err
	}
	be, err := OpenSecondaryStorage(ctx, c)
	if err != nil {
		return nil, err
	}
	return openVault(ctx, c, be, secret)
}
