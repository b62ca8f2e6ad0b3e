// Package wire is vmvault's composition root: which storage backends and VM
// platforms this build has, and how the settings reach them. The binaries
// (worker, vmvault) call it; nothing below it knows the list. Adding a
// platform (qemu) or a storage wrapper (replication, fault injection) is one
// Register call here.
package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/images"
	"github.com/vmvault/vmvault/infra/platform/qemu"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

// Storage returns the storage backends of this build, by URL scheme.
func Storage(c config.Config) *storage.Registry {
	r := &storage.Registry{}
	r.Register("file", fs.Open)
	r.Register("s3", func(ctx context.Context, u *url.URL) (storage.Backend, error) {
		if u.Host == "" {
			return nil, fmt.Errorf("no bucket (want s3://bucket/prefix)")
		}
		return s3.New(ctx, s3.Config{
			Endpoint: c.S3Endpoint, Region: c.S3Region, PathStyle: c.S3PathStyle,
			Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"),
		})
	})
	return r
}

// Platforms returns the VM platforms of this build, by name.
func Platforms(c config.Config) *platform.Registry {
	r := &platform.Registry{}
	r.Register("images", func(context.Context) (platform.Platform, error) { return images.New(c.ImagesRoot) })
	r.Register("qemu", func(context.Context) (platform.Platform, error) { return qemu.New(c.QEMUInventory) })
	return r
}

// OpenStorage opens the storage the configured vault URL names.
func OpenStorage(ctx context.Context, c config.Config) (storage.Backend, error) {
	return Storage(c).Open(ctx, c.Vault)
}

// keyAndStorage reads the configured vault key and opens the storage.
func keyAndStorage(ctx context.Context, c config.Config) ([]byte, storage.Backend, error) {
	secret, err := c.Secret()
	if err != nil {
		return nil, nil, err
	}
	be, err := OpenStorage(ctx, c)
	return secret, be, err
}

// OpenVault opens the configured vault with the configured key.
func OpenVault(ctx context.Context, c config.Config) (*vault.Vault, error) {
	secret, be, err := keyAndStorage(ctx, c)
	if err != nil {
		return nil, err
	}
	return openVault(ctx, c, be, secret)
}

func openVault(ctx context.Context, c config.Config, be storage.Backend, secret []byte) (*vault.Vault, error) {
	v, err := vault.Open(ctx, be, secret)
	if err != nil {
		return nil, err
	}
	v.Repo().SetIndexOptions(vault.IndexOptions{Dir: c.IndexDir, Reconcile: c.IndexReconcile})
	return v, nil
}

// InitVault creates a vault where the configured URL points, first creating
// its container (an S3 bucket) when the backend needs one.
func InitVault(ctx context.Context, c config.Config, opt vault.InitOptions) (*vault.Vault, error) {
	secret, be, err := keyAndStorage(ctx, c)
	if err != nil {
		return nil, err
	}
	if p, ok := be.(storage.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			return nil, fmt.Errorf("init vault at %s: %w", be.Location(), err)
		}
	}
	v, err := vault.Init(ctx, be, secret, opt)
	if err != nil {
		return nil, err
	}
	v.Repo().SetIndexOptions(vault.IndexOptions{Dir: c.IndexDir, Reconcile: c.IndexReconcile})
	return v, nil
}

// OpenPlatform opens the configured VM platform.
func OpenPlatform(ctx context.Context, c config.Config) (platform.Platform, error) {
	return Platforms(c).Open(ctx, c.Platform)
}

// Dial connects to Temporal.
func Dial(c config.Config, logger *slog.Logger) (client.Client, error) {
	opts := client.Options{HostPort: c.TemporalAddress, Namespace: c.Namespace}
	if logger != nil {
		opts.Logger = tlog.NewStructuredLogger(logger)
	}
	if c.TLSCert != "" || c.TLSCA != "" {
		tc, err := tlsConfig(c)
		if err != nil {
			return nil, err
		}
		opts.ConnectionOptions.TLS = tc
	}
	cl, err := client.Dial(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to temporal at %s: %w", c.TemporalAddress, err)
	}
	return cl, nil
}

func tlsConfig(c config.Config) (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.TLSServerName, MinVersion: tls.VersionTLS12}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("temporal tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("temporal tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("temporal tls ca %s: no certificates", c.TLSCA)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
