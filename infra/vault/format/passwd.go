package format

import (
	"fmt"

	"golang.org/x/crypto/argon2"
)

// The user's passphrase or key file is stretched with argon2id into the key
// that wraps the master key. The parameters live in the config, so a vault
// can raise them later (ChangeKey); Open refuses parameters outside the
// bounds below before running the KDF, so a hostile config cannot make it
// allocate gigabytes or spin for minutes.
const (
	KDFArgon2id = "argon2id"

	// MinSecretLen is the shortest passphrase or key a vault accepts. Key
	// files made by `make up` (32 random bytes in base64) have 44.
	MinSecretLen = 12

	DefaultKDFTime      = 3
	DefaultKDFMemoryKiB = 64 << 10 // 64 MiB
	DefaultKDFThreads   = 4

	MaxKDFTime      = 16
	MaxKDFMemoryKiB = 1 << 20 // 1 GiB
	MaxKDFThreads   = 64
	kdfSaltLen      = 32
)

// MinKDFMemoryKiB is the least memory a vault's KDF may use: 8 MiB.
const MinKDFMemoryKiB = 8 << 10

// minKDFMemoryKiB is the floor in force: the package's tests lower it to
// keep their many inits cheap.
var minKDFMemoryKiB uint32 = MinKDFMemoryKiB

// LowerKDFFloorForTests lowers the floor for the tests of packages that
// Init and Open many vaults (from a test's init); no real vault calls it.
func LowerKDFFloorForTests(kib uint32) { minKDFMemoryKiB = kib }

// KeyOptions set the cost of deriving the wrapping key from the user's
// secret; zero values take the defaults. Tests lower them; values below
// 8 MiB of memory are refused.
type KeyOptions struct {
	KDFTime      int // argon2id passes
	KDFMemoryKiB int // argon2id memory in KiB
	KDFThreads   int // argon2id lanes
}

// KDFParams describe how the key-encryption key is derived from the user's key.
type KDFParams struct {
	Algorithm string `json:"algorithm"` // "argon2id"
	Salt      []byte `json:"salt"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// NewKDFParams checks opt and fills in defaults; the salt is left empty.
func NewKDFParams(opt KeyOptions) (KDFParams, error) {
	p := KDFParams{Algorithm: KDFArgon2id, Time: DefaultKDFTime, MemoryKiB: DefaultKDFMemoryKiB, Threads: DefaultKDFThreads}
	if opt.KDFTime < 0 || opt.KDFMemoryKiB < 0 || opt.KDFThreads < 0 {
		return p, fmt.Errorf("key derivation: negative cost (time %d, memory %d KiB, threads %d)", opt.KDFTime, opt.KDFMemoryKiB, opt.KDFThreads)
	}
	if opt.KDFTime > MaxKDFTime || opt.KDFMemoryKiB > MaxKDFMemoryKiB || opt.KDFThreads > MaxKDFThreads {
		return p, fmt.Errorf("key derivation: cost above the maximum (time %d, memory %d KiB, threads %d; at most %d, %d KiB, %d)",
			opt.KDFTime, opt.KDFMemoryKiB, opt.KDFThreads, MaxKDFTime, MaxKDFMemoryKiB, MaxKDFThreads)
	}
	if opt.KDFTime != 0 {
		p.Time = uint32(opt.KDFTime)
	}
	if opt.KDFMemoryKiB != 0 {
		p.MemoryKiB = uint32(opt.KDFMemoryKiB)
	}
	if opt.KDFThreads != 0 {
		p.Threads = uint8(opt.KDFThreads)
	}
	return p, p.Check()
}

// Check bounds the parameters: called before deriving, on the stored config too.
func (p KDFParams) Check() error { return p.CheckMin(minKDFMemoryKiB) }

// CheckMin checks the parameters against the bounds, with minMemoryKiB the
// least memory.
func (p KDFParams) CheckMin(minMemoryKiB uint32) error {
	if p.Algorithm != KDFArgon2id {
		return fmt.Errorf("unsupported key derivation %q, want %q", p.Algorithm, KDFArgon2id)
	}
	if len(p.Salt) != 0 && len(p.Salt) != kdfSaltLen {
		return fmt.Errorf("key derivation salt has %d bytes, want %d", len(p.Salt), kdfSaltLen)
	}
	if p.Time < 1 || p.Time > MaxKDFTime {
		return fmt.Errorf("argon2id time %d: want 1 to %d", p.Time, MaxKDFTime)
	}
	if p.MemoryKiB < minMemoryKiB || p.MemoryKiB > MaxKDFMemoryKiB {
		return fmt.Errorf("argon2id memory %d KiB: want %d to %d KiB", p.MemoryKiB, minMemoryKiB, MaxKDFMemoryKiB)
	}
	if p.Threads < 1 || p.Threads > MaxKDFThreads {
		return fmt.Errorf("argon2id threads %d: want 1 to %d", p.Threads, MaxKDFThreads)
	}
	return nil
}

func (p KDFParams) derive(secret []byte) ([]byte, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if len(p.Salt) != kdfSaltLen {
		return nil, fmt.Errorf("key derivation salt has %d bytes, want %d", len(p.Salt), kdfSaltLen)
	}
	return argon2.IDKey(secret, p.Salt, p.Time, p.MemoryKiB, p.Threads, 32), nil
}

// CheckNewSecret refuses secrets too short to protect a vault.
func CheckNewSecret(secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("vault passphrase or key has %d bytes; it needs at least %d", len(secret), MinSecretLen)
	}
	return nil
}
