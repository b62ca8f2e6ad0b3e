package repo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// InitOptions tune a new vault; zero values take defaults.
type InitOptions struct {
	BlockSize   int
	PackSize    int
	LeafEntries int
	// Compression is CompressionS2 (default), CompressionZstd or CompressionNone.
	Compression string
	// KDFTime, KDFMemoryKiB and KDFThreads set the argon2id cost (see KeyOptions).
	KDFTime      int
	KDFMemoryKiB int
	KDFThreads   int
}

func (o InitOptions) keyOptions() format.KeyOptions {
	return format.KeyOptions{KDFTime: o.KDFTime, KDFMemoryKiB: o.KDFMemoryKiB, KDFThreads: o.KDFThreads}
}

// Repo is an open vault: its config, keys and storage.
type Repo struct {
	be    storage.Backend
	cfgMu sync.Mutex // guards cfg's key fields, which ChangeKey rewrites
	cfg   format.Config
	keys  *format.Keys
	idx   *index.Store // the index, loaded on first use
}

// New is the vault on be with config cfg, opened with keys (Init, Open and
// OnStorage build it; tests build one on a second backend).
func New(be storage.Backend, cfg format.Config, keys *format.Keys) *Repo {
	return &Repo{be: be, cfg: cfg, keys: keys, idx: index.NewStore(be, keys)}
}

// Init creates a vault on be, protected by secret. Of concurrent Inits on
// one storage exactly one succeeds; the others return ErrVaultExists.
func Init(ctx context.Context, be storage.Backend, secret []byte, opt InitOptions) (*Repo, error) {
	fail := func(err error) (*Repo, error) {
		return nil, fmt.Errorf("init vault at %s: %w", be.Location(), err)
	}
	if err := format.CheckNewSecret(secret); err != nil {
		return fail(err)
	}
	// A cheap early answer; PutIfAbsent below is what makes init atomic.
	if _, err := be.Stat(ctx, format.ConfigKey); err == nil {
		return fail(format.ErrVaultExists)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fail(err)
	}
	cfg := format.Config{
		Version: format.FormatVersion, ID: uuid.NewString(), CreatedAt: time.Now().UTC(),
		BlockSize: opt.BlockSize, PackSize: opt.PackSize, LeafEntries: opt.LeafEntries, Compression: opt.Compression,
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = format.DefaultBlockSize
	}
	if cfg.PackSize == 0 {
		cfg.PackSize = format.DefaultPackSize
	}
	if cfg.LeafEntries == 0 {
		cfg.LeafEntries = format.DefaultLeafEntries
	}
	if cfg.Compression == "" {
		cfg.Compression = format.CompressionS2
	}
	kdf, err := format.NewKDFParams(opt.keyOptions())
	if err != nil {
		return fail(err)
	}
	cfg.KDF = kdf
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	master := make([]byte, format.MasterKeyLen)
	if _, err := rand.Read(master); err != nil {
		return fail(err)
	}
	if err := cfg.Wrap(master, secret, kdf); err != nil {
		return fail(err)
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := be.PutIfAbsent(ctx, format.ConfigKey, data); errors.Is(err, storage.ErrExists) {
		return fail(format.ErrVaultExists)
	} else if err != nil {
		return fail(fmt.Errorf("write config: %w", err))
	}
	k, err := format.NewKeys(master, cfg.Compression)
	if err != nil {
		return fail(err)
	}
	return New(be, cfg, k), nil
}

// Open opens the vault on be with secret.
func Open(ctx context.Context, be storage.Backend, secret []byte) (*Repo, error) {
	cfg, master, err := readConfig(ctx, be, secret)
	if err != nil {
		return nil, fmt.Errorf("open vault at %s: %w", be.Location(), err)
	}
	k, err := format.NewKeys(master, cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("open vault at %s: %w", be.Location(), err)
	}
	return New(be, cfg, k), nil
}

// readConfig reads the stored config and unwraps its master key with secret.
func readConfig(ctx context.Context, be storage.Backend, secret []byte) (format.Config, []byte, error) {
	data, err := be.Get(ctx, format.ConfigKey)
	if errors.Is(err, storage.ErrNotFound) {
		return format.Config{}, nil, fmt.Errorf("%w (run 'vmvault vault init' first)", format.ErrNoVault)
	}
	if err != nil {
		return format.Config{}, nil, err
	}
	cfg, err := format.ParseConfig(be.Location(), data)
	if err != nil {
		return format.Config{}, nil, err
	}
	master, err := cfg.Unwrap(secret)
	if err != nil {
		return format.Config{}, nil, err
	}
	return cfg, master, nil
}

// ChangeKey rewraps the vault's master key under newSecret, with a new salt
// and opt's KDF cost (defaults for zero values). No data is rewritten: every
// recovery point opens with newSecret, and oldSecret stops working. It
// refuses unless oldSecret opens the stored config of this vault.
//
// The config is overwritten in place (storage Puts are atomic, so a crash
// leaves the old or the new config). Two ChangeKeys racing on one vault:
// the last write wins; both secrets were valid, so either result is usable.
func (v *Repo) ChangeKey(ctx context.Context, oldSecret, newSecret []byte, opt format.KeyOptions) error {
	fail := func(err error) error {
		return fmt.Errorf("change key of vault at %s: %w", v.be.Location(), err)
	}
	if err := format.CheckNewSecret(newSecret); err != nil {
		return fail(err)
	}
	kdf, err := format.NewKDFParams(opt)
	if err != nil {
		return fail(err)
	}
	cfg, master, err := readConfig(ctx, v.be, oldSecret)
	if err != nil {
		return fail(err)
	}
	if cfg.ID != v.Config().ID || !hmac.Equal(master, v.keys.Master) {
		return fail(fmt.Errorf("%w: the stored config belongs to vault %s, not %s", format.ErrCorrupt, cfg.ID, v.Config().ID))
	}
	if err := cfg.Wrap(master, newSecret, kdf); err != nil {
		return fail(err)
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := v.be.Put(ctx, format.ConfigKey, data); err != nil {
		return fail(fmt.Errorf("write config: %w", err))
	}
	// Read back what storage holds: the one copy of the wrapped master key.
	if back, err := v.be.Get(ctx, format.ConfigKey); err != nil {
		return fail(fmt.Errorf("read back config: %w", err))
	} else if !bytes.Equal(back, data) {
		return fail(fmt.Errorf("read back config: %w: stored config differs from the one written", format.ErrCorrupt))
	}
	// Only the key fields change: other code reads v.cfg's parameters unlocked.
	v.cfgMu.Lock()
	v.cfg.KDF, v.cfg.WrappedKey, v.cfg.MAC = cfg.KDF, cfg.WrappedKey, cfg.MAC
	v.cfgMu.Unlock()
	return nil
}

// Config returns the vault's config (without secrets being usable from it).
func (v *Repo) Config() format.Config {
	v.cfgMu.Lock()
	defer v.cfgMu.Unlock()
	return v.cfg
}

// Storage is the backend the vault lives on (replication copies it raw).
func (v *Repo) Storage() storage.Backend { return v.be }

// Keys are the vault's keys, for the layers that seal and open objects.
func (v *Repo) Keys() *format.Keys { return v.keys }

// IndexStore is the vault's index as this process sees it.
func (v *Repo) IndexStore() *index.Store { return v.idx }

// Location names the vault's storage, e.g. "s3://bucket/prefix".
func (v *Repo) Location() string { return v.be.Location() }

// PutSealed writes a sealed JSON object (index, manifest).
func (v *Repo) PutSealed(ctx context.Context, key string, obj any) error {
	sealed, err := format.SealJSON(v.keys, key, obj)
	if err != nil {
		return err
	}
	if err := v.PutObject(ctx, key, sealed); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// GetSealed reads the sealed JSON object at key into obj.
func (v *Repo) GetSealed(ctx context.Context, key string, obj any) error {
	return format.GetSealed(ctx, v.be, v.keys, key, obj)
}
