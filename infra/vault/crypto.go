package vault

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
	"golang.org/x/crypto/scrypt"
)

const (
	masterKeyLen = 64 // 32 bytes AES-256 key + 32 bytes BLAKE3 key
	nonceLen     = 12
	overhead     = nonceLen + 16

	flagRaw  byte = 0
	flagZstd byte = 1
	flagS2   byte = 2
)

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

// keys are the vault's secrets, unwrapped from the config with the user's key.
type keys struct {
	flag    byte // compression of new blobs: flagZstd, flagS2 or flagRaw
	aead    cipher.AEAD
	hashKey []byte
	hashers sync.Pool // of *blake3.Hasher keyed with hashKey
}

func compressionFlag(name string) (byte, error) {
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

func newKeys(master []byte, compression string) (*keys, error) {
	flag, err := compressionFlag(compression)
	if err != nil {
		return nil, err
	}
	if len(master) != masterKeyLen {
		return nil, fmt.Errorf("master key has %d bytes, want %d", len(master), masterKeyLen)
	}
	block, err := aes.NewCipher(master[:32])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &keys{flag: flag, aead: aead, hashKey: append([]byte(nil), master[32:]...)}, nil
}

// hash returns the keyed hash of data: the id of a blob holding it.
func (k *keys) hash(data []byte) ID {
	h, _ := k.hashers.Get().(*blake3.Hasher)
	if h == nil {
		var err error
		h, err = blake3.NewKeyed(k.hashKey)
		if err != nil {
			panic(err) // key length is checked in newKeys
		}
	}
	h.Reset()
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	k.hashers.Put(h)
	return id
}

// seal encrypts plaintext with a fresh random nonce, binding ad.
func (k *keys) seal(dst, plaintext, ad []byte) []byte {
	dst = growTo(dst, nonceLen)
	if _, err := rand.Read(dst[:nonceLen]); err != nil {
		panic(err)
	}
	return k.aead.Seal(dst, dst[:nonceLen], plaintext, ad)
}

func (k *keys) open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < overhead {
		return nil, fmt.Errorf("%w: sealed data too short (%d bytes)", ErrCorrupt, len(sealed))
	}
	out, err := k.aead.Open(dst, sealed[:nonceLen], sealed[nonceLen:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return out, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, n+overhead)
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

// compress appends the compressed form of src to dst.
func compress(flag byte, dst, src []byte) []byte {
	if flag == flagS2 {
		n := len(dst)
		dst = slices.Grow(dst, s2.MaxEncodedLen(len(src)))
		return dst[:n+len(s2.Encode(dst[n:n+s2.MaxEncodedLen(len(src))], src))]
	}
	return zenc.EncodeAll(src, dst)
}

// sealBlob compresses (when that saves at least 1/32) and encrypts data.
// scratch is reused for the compressed form.
func (k *keys) sealBlob(id ID, data, scratch []byte) (sealed, newScratch []byte) {
	pays := k.flag != flagRaw
	if pays && len(data) > 4*probeSize {
		scratch = compress(k.flag, scratch[:0], data[:probeSize])
		pays = len(scratch) < probeSize-probeSize/32
	}
	if pays {
		scratch = compress(k.flag, append(scratch[:0], k.flag), data)
		pays = len(scratch)-1 <= len(data)-len(data)/32
	}
	if !pays {
		scratch = append(append(scratch[:0], flagRaw), data...)
	}
	return k.seal(make([]byte, 0, len(scratch)+overhead), scratch, id[:]), scratch
}

// openBlob decrypts, decompresses and verifies a blob against its id.
func (k *keys) openBlob(id ID, sealed []byte) ([]byte, error) {
	plain, err := k.open(nil, sealed, id[:])
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
	if got := k.hash(data); got != id {
		return nil, fmt.Errorf("%w: content hashes to %s", ErrCorrupt, got.Short())
	}
	return data, nil
}

// kdfParams describe how the key-encryption key is derived from the user's key.
type kdfParams struct {
	Algorithm string `json:"algorithm"` // "scrypt"
	Salt      []byte `json:"salt"`
	N         int    `json:"n"`
	R         int    `json:"r"`
	P         int    `json:"p"`
}

func (p kdfParams) derive(secret []byte) ([]byte, error) {
	if p.Algorithm != "scrypt" {
		return nil, fmt.Errorf("unsupported key derivation %q", p.Algorithm)
	}
	return scrypt.Key(secret, p.Salt, p.N, p.R, p.P, 32)
}
