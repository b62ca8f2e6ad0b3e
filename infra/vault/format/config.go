package format

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"time"

	"github.com/google/uuid"
	"github.com/zeebo/blake3"
)

const (
	// FormatVersion 2: per-object subkeys, argon2id, authenticated config.
	// 3: index objects named by time (index/<ms>-<pack>) and binary; GC's
	// deletion log (gc/deleted/).
	FormatVersion = 3

	// maxConfigSize bounds what Open parses: a config is well under 1 KiB.
	maxConfigSize = 64 << 10

	wrapNonceLen  = 12
	wrappedKeyLen = wrapNonceLen + MasterKeyLen + tagLen
	macLen        = 32

	// wrapAD binds the wrapped key to its purpose only, so that a wrong
	// secret (the wrap fails) is told apart from an edited config (the wrap
	// opens, the MAC under the master key does not).
	wrapAD         = "vmvault config wrapped master key v2"
	macKeyContext  = "vmvault 2 config MAC key"
	macInputDomain = "vmvault config v2\x00"
)

// Config is the vault's one mutable object: the master key is stored wrapped
// with a key derived from the user's passphrase or key file, and ChangeKey
// rewraps it. MAC, a keyed BLAKE3 under a key derived from the master key,
// covers every other field, so a config edited in storage does not open.
type Config struct {
	Version     int       `json:"version"`
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	BlockSize   int       `json:"block_size"`
	PackSize    int       `json:"pack_size"`
	LeafEntries int       `json:"leaf_entries"`
	Compression string    `json:"compression"`
	KDF         KDFParams `json:"kdf"`
	WrappedKey  []byte    `json:"wrapped_key"`
	// Immutable is set once by SetImmutable and never unset (repo/immutable.go).
	Immutable *Immutability `json:"immutable,omitempty"`
	MAC       []byte        `json:"mac"`
}

// Validate checks the parameters a vault is used with.
func (c Config) Validate() error {
	if _, err := uuid.Parse(c.ID); err != nil {
		return fmt.Errorf("vault id %q: %v", c.ID, err)
	}
	if c.BlockSize < MinBlockSize || c.BlockSize > MaxBlockSize || bits.OnesCount(uint(c.BlockSize)) != 1 {
		return fmt.Errorf("block size %d: want a power of two from %d to %d", c.BlockSize, MinBlockSize, MaxBlockSize)
	}
	if c.PackSize < c.BlockSize || c.PackSize > 1<<30 {
		return fmt.Errorf("pack size %d: want from the block size to 1 GiB", c.PackSize)
	}
	if _, err := CompressionFlag(c.Compression); err != nil {
		return err
	}
	if c.Immutable != nil {
		if err := c.Immutable.Check(); err != nil {
			return err
		}
	}
	if c.LeafEntries < 2 || c.LeafEntries > 1<<20 {
		return fmt.Errorf("leaf entries %d: want 2 to %d", c.LeafEntries, 1<<20)
	}
	return c.KDF.Check()
}

// ParseConfig decodes and checks a stored config without any key: the
// version first, so an old or new format gets a clear error.
func ParseConfig(location string, data []byte) (Config, error) {
	var cfg Config
	if len(data) > maxConfigSize {
		return cfg, fmt.Errorf("config: %w: %d bytes, more than %d", ErrCorrupt, len(data), maxConfigSize)
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return cfg, fmt.Errorf("config: %w: %v", ErrCorrupt, err)
	}
	switch {
	case head.Version >= 1 && head.Version < FormatVersion:
		return cfg, fmt.Errorf("vault at %s has format version %d; this build reads version %d: %w (vaults of version %d cannot be opened by this build: pre-1.0 format change, no migration; an older vmvault still reads it)",
			location, head.Version, FormatVersion, ErrFormatVersion, head.Version)
	case head.Version != FormatVersion:
		return cfg, fmt.Errorf("vault at %s has format version %d; this build reads version %d: %w", location, head.Version, FormatVersion, ErrFormatVersion)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("config: %w: %v", ErrCorrupt, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w: %v", ErrCorrupt, err)
	}
	if len(cfg.KDF.Salt) != kdfSaltLen {
		return cfg, fmt.Errorf("config: %w: key derivation salt has %d bytes, want %d", ErrCorrupt, len(cfg.KDF.Salt), kdfSaltLen)
	}
	if len(cfg.WrappedKey) != wrappedKeyLen {
		return cfg, fmt.Errorf("config: %w: wrapped key has %d bytes, want %d", ErrCorrupt, len(cfg.WrappedKey), wrappedKeyLen)
	}
	if len(cfg.MAC) != macLen {
		return cfg, fmt.Errorf("config: %w: mac has %d bytes, want %d", ErrCorrupt, len(cfg.MAC), macLen)
	}
	return cfg, nil
}

// Wrap sets a new salt and KDF parameters, wraps master under secret and
// recomputes the MAC.
func (c *Config) Wrap(master, secret []byte, kdf KDFParams) error {
	kdf.Salt = make([]byte, kdfSaltLen)
	if _, err := rand.Read(kdf.Salt); err != nil {
		return err
	}
	kek, err := kdf.derive(secret)
	if err != nil {
		return err
	}
	aead, err := wrapAEAD(kek)
	if err != nil {
		return err
	}
	nonce := make([]byte, wrapNonceLen, wrappedKeyLen)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	c.KDF = kdf
	c.WrappedKey = aead.Seal(nonce, nonce, master, []byte(wrapAD))
	c.MAC = c.ComputeMAC(master)
	return nil
}

// Unwrap returns the master key if secret opens the config and the config
// is the one the master key authenticated.
func (c Config) Unwrap(secret []byte) ([]byte, error) {
	kek, err := c.KDF.derive(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	aead, err := wrapAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(c.WrappedKey) != wrappedKeyLen {
		return nil, fmt.Errorf("%w: wrapped key has %d bytes, want %d", ErrCorrupt, len(c.WrappedKey), wrappedKeyLen)
	}
	master, err := aead.Open(nil, c.WrappedKey[:wrapNonceLen], c.WrappedKey[wrapNonceLen:], []byte(wrapAD))
	if err != nil {
		// An edited salt, KDF cost or wrapped key looks the same as a wrong secret.
		return nil, ErrWrongKey
	}
	if !hmac.Equal(c.MAC, c.ComputeMAC(master)) {
		return nil, fmt.Errorf("%w: the config was altered (its parameters do not match the MAC under the vault's key)", ErrCorrupt)
	}
	return master, nil
}

func wrapAEAD(kek []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ComputeMAC authenticates every field but the MAC itself, in a fixed binary
// encoding so re-encoding the JSON cannot change it.
func (c Config) ComputeMAC(master []byte) []byte {
	var key [32]byte
	blake3.DeriveKey(macKeyContext, master, key[:])
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(err) // 32-byte key
	}
	b := []byte(macInputDomain)
	str := func(s []byte) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	num := func(n int64) { b = binary.BigEndian.AppendUint64(b, uint64(n)) }
	num(int64(c.Version))
	str([]byte(c.ID))
	num(c.CreatedAt.Unix())
	num(int64(c.CreatedAt.Nanosecond()))
	num(int64(c.BlockSize))
	num(int64(c.PackSize))
	num(int64(c.LeafEntries))
	str([]byte(c.Compression))
	str([]byte(c.KDF.Algorithm))
	str(c.KDF.Salt)
	num(int64(c.KDF.Time))
	num(int64(c.KDF.MemoryKiB))
	num(int64(c.KDF.Threads))
	str(c.WrappedKey)
	if im := c.Immutable; im != nil {
		// Only immutable vaults add these, so older configs keep their MAC.
		str([]byte("immutable"))
		num(im.Since.Unix())
		num(int64(im.Days))
		str([]byte(im.ObjectLock))
	}
	_, _ = h.Write(b)
	return h.Sum(nil)
}

const (
	DefaultBlockSize   = 64 << 10 // chosen by make bench: see BENCHMARKS.md
	DefaultPackSize    = 16 << 20
	DefaultLeafEntries = 1024
	MinBlockSize       = 64 << 10
	MaxBlockSize       = 8 << 20
)
