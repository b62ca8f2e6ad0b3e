package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

const (
	configKey     = "config"
	formatVersion = 1

	DefaultBlockSize   = 1 << 20
	DefaultPackSize    = 16 << 20
	DefaultLeafEntries = 1024
	MinBlockSize       = 64 << 10
	MaxBlockSize       = 8 << 20
)

// Config is the vault's only mutable-at-creation object. The master key is
// stored wrapped with a key derived from the user's passphrase or key file.
type Config struct {
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	BlockSize   int       `json:"block_size"`
	PackSize    int       `json:"pack_size"`
	LeafEntries int       `json:"leaf_entries"`
	Compression string    `json:"compression"`
	KDF         kdfParams `json:"kdf"`
	WrappedKey  []byte    `json:"wrapped_key"`
}

// InitOptions tune a new vault; zero values take defaults.
type InitOptions struct {
	BlockSize   int
	PackSize    int
	LeafEntries int
	// Compression is CompressionS2 (default), CompressionZstd or CompressionNone.
	Compression string
	// ScryptN is the scrypt cost; tests lower it.
	ScryptN int
}

// Vault is an open vault: its config, keys and storage.
type Vault struct {
	be   storage.Backend
	cfg  Config
	keys *keys
	// idx is loaded on first use and only grows; idxMu guards loading it.
	idxMu sync.Mutex
	idx   *Index
}

// Init creates a vault on be, protected by secret.
func Init(ctx context.Context, be storage.Backend, secret []byte, opt InitOptions) (*Vault, error) {
	if len(secret) == 0 {
		return nil, errors.New("init vault: empty passphrase or key")
	}
	if _, err := be.Stat(ctx, configKey); err == nil {
		return nil, fmt.Errorf("init vault at %s: %w", be.Location(), ErrVaultExists)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("init vault at %s: %w", be.Location(), err)
	}
	cfg := Config{
		Version: formatVersion, ID: uuid.NewString(), CreatedAt: time.Now().UTC(),
		BlockSize: opt.BlockSize, PackSize: opt.PackSize, LeafEntries: opt.LeafEntries, Compression: opt.Compression,
		KDF: kdfParams{Algorithm: "scrypt", N: opt.ScryptN, R: 8, P: 1, Salt: make([]byte, 32)},
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.PackSize == 0 {
		cfg.PackSize = DefaultPackSize
	}
	if cfg.LeafEntries == 0 {
		cfg.LeafEntries = DefaultLeafEntries
	}
	if cfg.Compression == "" {
		cfg.Compression = CompressionS2
	}
	if cfg.KDF.N == 0 {
		cfg.KDF.N = 1 << 15
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("init vault at %s: %w", be.Location(), err)
	}
	master := make([]byte, masterKeyLen)
	if _, err := rand.Read(master); err != nil {
		return nil, err
	}
	if _, err := rand.Read(cfg.KDF.Salt); err != nil {
		return nil, err
	}
	kek, err := cfg.KDF.derive(secret)
	if err != nil {
		return nil, err
	}
	wrap, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	cfg.WrappedKey = wrap.Seal(nonce, nonce, master, []byte(cfg.ID))
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := be.Put(ctx, configKey, data); err != nil {
		return nil, fmt.Errorf("init vault at %s: write config: %w", be.Location(), err)
	}
	k, err := newKeys(master, cfg.Compression)
	if err != nil {
		return nil, err
	}
	return &Vault{be: be, cfg: cfg, keys: k}, nil
}

// Open opens the vault on be with secret.
func Open(ctx context.Context, be storage.Backend, secret []byte) (*Vault, error) {
	data, err := be.Get(ctx, configKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("open vault at %s: %w (run 'vmvault vault init' first)", be.Location(), ErrNoVault)
	}
	if err != nil {
		return nil, fmt.Errorf("open vault at %s: %w", be.Location(), err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("open vault at %s: config: %w: %v", be.Location(), ErrCorrupt, err)
	}
	if cfg.Version != formatVersion {
		return nil, fmt.Errorf("open vault at %s: format version %d, this build reads %d", be.Location(), cfg.Version, formatVersion)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("open vault at %s: config: %w: %v", be.Location(), ErrCorrupt, err)
	}
	kek, err := cfg.KDF.derive(secret)
	if err != nil {
		return nil, fmt.Errorf("open vault at %s: %w", be.Location(), err)
	}
	wrap, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	if len(cfg.WrappedKey) < overhead {
		return nil, fmt.Errorf("open vault at %s: config: %w: wrapped key too short", be.Location(), ErrCorrupt)
	}
	master, err := wrap.Open(nil, cfg.WrappedKey[:nonceLen], cfg.WrappedKey[nonceLen:], []byte(cfg.ID))
	if err != nil {
		return nil, fmt.Errorf("open vault at %s: %w", be.Location(), ErrWrongKey)
	}
	k, err := newKeys(master, cfg.Compression)
	if err != nil {
		return nil, err
	}
	return &Vault{be: be, cfg: cfg, keys: k}, nil
}

func (c Config) validate() error {
	if c.BlockSize < MinBlockSize || c.BlockSize > MaxBlockSize || bits.OnesCount(uint(c.BlockSize)) != 1 {
		return fmt.Errorf("block size %d: want a power of two from %d to %d", c.BlockSize, MinBlockSize, MaxBlockSize)
	}
	if c.PackSize < c.BlockSize || c.PackSize > 1<<30 {
		return fmt.Errorf("pack size %d: want from the block size to 1 GiB", c.PackSize)
	}
	if _, err := compressionFlag(c.Compression); err != nil {
		return err
	}
	if c.LeafEntries < 2 || c.LeafEntries > 1<<20 {
		return fmt.Errorf("leaf entries %d: want 2 to %d", c.LeafEntries, 1<<20)
	}
	return nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Config returns the vault's config (without secrets being usable from it).
func (v *Vault) Config() Config { return v.cfg }

// Location names the vault's storage, e.g. "s3://bucket/prefix".
func (v *Vault) Location() string { return v.be.Location() }

// putSealed writes a sealed JSON object (index, manifest).
func (v *Vault) putSealed(ctx context.Context, key string, obj any) error {
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	sealed := v.keys.seal(nil, data, []byte(key))
	if err := v.be.Put(ctx, key, sealed); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func (v *Vault) getSealed(ctx context.Context, key string, obj any) error {
	sealed, err := v.be.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	data, err := v.keys.open(nil, sealed, []byte(key))
	if err != nil {
		return fmt.Errorf("%s in %s: %w", key, v.be.Location(), err)
	}
	if err := json.Unmarshal(data, obj); err != nil {
		return fmt.Errorf("%s in %s: %w: %v", key, v.be.Location(), ErrCorrupt, err)
	}
	return nil
}
