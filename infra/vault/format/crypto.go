package format

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// Sealing (format version 2): per-object subkeys.
//
// Every sealed object carries a fresh random 32-byte salt; its key is
// subkey = BLAKE3-keyed(encKey, salt), and AES-256-GCM runs once under that
// subkey with an all-zero nonce. A (key, nonce) pair repeats only if two
// salts do: among n = 10^12 objects that happens with probability at most
// n^2/2^257 ~ 4e-54, so the vault has no nonce budget to run out of (one
// AES-GCM key with random 96-bit nonces, format version 1, is limited to
// 2^32 seals: months at 1000 VMs x 1 TB with daily churn). Each GCM key
// encrypts a single object, far below GCM's per-key data limits.
//
// Why not XChaCha20-Poly1305 (192-bit random nonces, collision ~8e-35 at
// 10^12): on AES-NI servers it seals+opens 1 MiB blocks at half the speed,
// while the subkey costs a BLAKE3 call and an AES key schedule per object
// (~1.3 us), noise next to a 1 MiB block; small objects (tree nodes,
// indexes) are few. BenchmarkSealOpen, seal+open per op, on a loaded 2-core
// Xeon 2.5 GHz with AES-NI (go test -run '^$' -bench SealOpen -count 3):
//
//	            subkey AES-GCM   v1 AES-GCM     XChaCha20-Poly1305
//	1 MiB       0.95-1.01 ms     0.71-1.07 ms   1.98-2.18 ms
//	4 KiB       6.0-7.1 us       3.6-4.2 us     8.7-10.4 us
//
// AES-GCM-SIV is not in the standard library or x/crypto.
//
// A sealed object is salt || ciphertext || tag: a fixed Overhead, so pack
// offsets are computed from plaintext lengths.
const (
	MasterKeyLen = 64 // 32 bytes subkey derivation key + 32 bytes BLAKE3 id key
	saltLen      = 32
	tagLen       = 16
	Overhead     = saltLen + tagLen

	flagRaw  byte = 0
	flagZstd byte = 1
	flagS2   byte = 2
)

// zeroNonce is the nonce of every seal: each subkey seals one object.
var zeroNonce = make([]byte, 12)

// Compression algorithms a vault can use for its blocks.
const (
	// CompressionS2 is the default: on the reference image (make bench) a
	// full backup with s2 takes as long as one without compression, while
	// zstd (fastest level) doubles it on 2 cores for 7% less storage there
	// (up to ~25% less on executables).
	CompressionS2   = "s2"
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// Keys are the vault's secrets, unwrapped from the config with the user's key.
type Keys struct {
	flag    byte   // compression of new blobs: flagZstd, flagS2 or flagRaw
	Master  []byte // kept to authenticate and rewrap the config
	subkeys hasherPool
	ids     hasherPool
}

// hasherPool holds BLAKE3 hashers keyed with one key.
type hasherPool struct {
	key  []byte
	pool sync.Pool // of *blake3.Hasher
}

func (p *hasherPool) get() *blake3.Hasher {
	h, _ := p.pool.Get().(*blake3.Hasher)
	if h == nil {
		var err error
		h, err = blake3.NewKeyed(p.key)
		if err != nil {
			panic(err) // key length is checked in newKeys
		}
	}
	h.Reset()
	return h
}

func (p *hasherPool) sum(dst []byte, data []byte) {
	h := p.get()
	_, _ = h.Write(data)
	h.Sum(dst[:0])
	p.pool.Put(h)
}

// CompressionFlag is the blob flag of a compression name.
func CompressionFlag(name string) (byte, error) {
	switch name {
	case CompressionZstd:
		return flagZstd, nil
	case CompressionS2:
		return flagS2, nil
	case CompressionNone:
		return flagRaw, nil
	}
	return 0, fmt.Errorf("compression %q: want %s, %s or %s", name, CompressionZstd, CompressionS2, CompressionNone)
}

// NewKeys derives the vault's keys from its master key; new blobs are
// compressed with compression.
func NewKeys(master []byte, compression string) (*Keys, error) {
	flag, err := CompressionFlag(compression)
	if err != nil {
		return nil, err
	}
	if len(master) != MasterKeyLen {
		return nil, fmt.Errorf("master key has %d bytes, want %d", len(master), MasterKeyLen)
	}
	master = slices.Clone(master)
	return &Keys{flag: flag, Master: master, subkeys: hasherPool{key: master[:32]}, ids: hasherPool{key: master[32:]}}, nil
}

// Hash returns the keyed Hash of data: the id of a blob holding it.
func (k *Keys) Hash(data []byte) ID {
	var id ID
	k.ids.sum(id[:], data)
	return id
}

// aead returns the AES-256-GCM instance for one object's salt.
func (k *Keys) aead(salt []byte) cipher.AEAD {
	var sub [32]byte
	k.subkeys.sum(sub[:], salt)
	block, err := aes.NewCipher(sub[:])
	if err != nil {
		panic(err) // 32-byte key
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// Seal appends salt || ciphertext || tag of plaintext to dst[:0], binding ad.
func (k *Keys) Seal(dst, plaintext, ad []byte) []byte {
	dst = growTo(dst, saltLen)
	if _, err := rand.Read(dst[:saltLen]); err != nil {
		panic(err)
	}
	return k.aead(dst[:saltLen]).Seal(dst, zeroNonce, plaintext, ad)
}

// Open opens a sealed object bound to ad (ErrCorrupt if it does not
// authenticate).
func (k *Keys) Open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: sealed data too short (%d bytes)", ErrCorrupt, len(sealed))
	}
	out, err := k.aead(sealed[:saltLen]).Open(dst, zeroNonce, sealed[saltLen:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return out, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, n+Overhead)
	}
	return b[:n]
}

// EncodeAll and DecodeAll are safe for concurrent use, up to the encoder's
// concurrency: one encoder per core, or block workers queue on it.
var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
)

// probeSize is how much of a block is compressed first to tell whether
// compressing the rest pays: already-compressed or encrypted data (a large
// part of real disks) then costs one small probe instead of a full pass.
const probeSize = 32 << 10

// Compress appends the compressed form of src to dst.
func Compress(flag byte, dst, src []byte) []byte {
	if flag == flagS2 {
		n := len(dst)
		dst = slices.Grow(dst, s2.MaxEncodedLen(len(src)))
		return dst[:n+len(s2.Encode(dst[n:n+s2.MaxEncodedLen(len(src))], src))]
	}
	return zenc.EncodeAll(src, dst)
}

// SealBlob compresses (when that saves at least 1/32) and encrypts data.
// scratch is reused for the compressed form.
func (k *Keys) SealBlob(id ID, data, scratch []byte) (sealed, newScratch []byte) {
	pays := k.flag != flagRaw
	if pays && len(data) > 4*probeSize {
		scratch = Compress(k.flag, scratch[:0], data[:probeSize])
		pays = len(scratch) < probeSize-probeSize/32
	}
	if pays {
		scratch = Compress(k.flag, append(scratch[:0], k.flag), data)
		pays = len(scratch)-1 <= len(data)-len(data)/32
	}
	if !pays {
		scratch = append(append(scratch[:0], flagRaw), data...)
	}
	return k.Seal(make([]byte, 0, len(scratch)+Overhead), scratch, id[:]), scratch
}

// OpenBlob decrypts, decompresses and verifies a blob against its id.
func (k *Keys) OpenBlob(id ID, sealed []byte) ([]byte, error) {
	plain, err := k.Open(nil, sealed, id[:])
	if err != nil {
		return nil, err
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("%w: empty blob", ErrCorrupt)
	}
	var data []byte
	switch plain[0] {
	case flagRaw:
		data = plain[1:]
	case flagZstd:
		data, err = zdec.DecodeAll(plain[1:], nil)
		if err != nil {
			return nil, fmt.Errorf("%w: decompress: %v", ErrCorrupt, err)
		}
	case flagS2:
		data, err = s2.Decode(nil, plain[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: decompress: %v", ErrCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("%w: unknown blob flag %d", ErrCorrupt, plain[0])
	}
	if got := k.Hash(data); got != id {
		return nil, fmt.Errorf("%w: content hashes to %s", ErrCorrupt, got.Short())
	}
	return data, nil
}
