package format

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// The package's tests use a cheap KDF: the floor that protects real vaults
// would make each derivation cost tens of milliseconds.
func init() { minKDFMemoryKiB = 64 }

func testKeys(t testing.TB) *Keys {
	t.Helper()
	master := make([]byte, MasterKeyLen)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	k, err := NewKeys(master, CompressionS2)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := testKeys(t)
	for _, n := range []int{0, 1, 4 << 10, 1<<20 + 3} {
		plain := make([]byte, n)
		_, _ = rand.Read(plain)
		a := k.Seal(nil, plain, []byte("ad"))
		b := k.Seal(nil, plain, []byte("ad"))
		if len(a) != n+Overhead {
			t.Fatalf("sealed %d bytes into %d, want fixed overhead %d", n, len(a), Overhead)
		}
		if bytes.Equal(a[:saltLen], b[:saltLen]) || bytes.Equal(a, b) {
			t.Fatal("two seals of the same plaintext share a salt")
		}
		got, err := k.Open(nil, a, []byte("ad"))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("open %d bytes: %v", n, err)
		}
		for _, i := range []int{0, saltLen - 1, saltLen, len(a) - 1} {
			if i >= len(a) {
				continue
			}
			bad := bytes.Clone(a)
			bad[i] ^= 1
			if _, err := k.Open(nil, bad, []byte("ad")); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d of %d flipped: %v", i, len(a), err)
			}
		}
		if _, err := k.Open(nil, a, []byte("other")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("other additional data: %v", err)
		}
		if _, err := testKeys(t).Open(nil, a, []byte("ad")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("other master key: %v", err)
		}
	}
	if _, err := k.Open(nil, make([]byte, Overhead-1), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short: %v", err)
	}
}

func TestSealBlob(t *testing.T) {
	k := testKeys(t)
	data := bytes.Repeat([]byte("vmvault "), 8<<10)
	id := k.Hash(data)
	sealed, _ := k.SealBlob(id, data, nil)
	got, err := k.OpenBlob(id, sealed)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("openBlob: %v", err)
	}
	var other ID
	other[0] = 1
	if _, err := k.OpenBlob(other, sealed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("blob opened under another id: %v", err)
	}
}

// sealScheme is one way to seal objects, for comparing candidate schemes.
type sealScheme interface {
	Seal(dst, plaintext, ad []byte) []byte
	Open(dst, sealed, ad []byte) ([]byte, error)
}

// randomNonceAEAD is format version 1 (one AES-256-GCM key, random 96-bit
// nonces) and XChaCha20-Poly1305 (192-bit random nonces).
type randomNonceAEAD struct{ cipher.AEAD }

func (a randomNonceAEAD) Seal(dst, plaintext, ad []byte) []byte {
	n := a.NonceSize()
	dst = append(dst[:0], make([]byte, n)...)
	if _, err := rand.Read(dst); err != nil {
		panic(err)
	}
	return a.AEAD.Seal(dst, dst, plaintext, ad)
}

func (a randomNonceAEAD) Open(dst, sealed, ad []byte) ([]byte, error) {
	n := a.NonceSize()
	return a.AEAD.Open(dst, sealed[:n], sealed[n:], ad)
}

// BenchmarkSealOpen seals and opens one object per iteration with today's
// scheme (per-object subkeys) and the candidates it was chosen over; compare
// the ratios within one run:
//
//	go test -run '^$' -bench SealOpen -benchtime 2s ./infra/vault/format/
func BenchmarkSealOpen(b *testing.B) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	xc, err := chacha20poly1305.NewX(key)
	if err != nil {
		b.Fatal(err)
	}
	schemes := []struct {
		name string
		s    sealScheme
	}{
		{"subkey-aes256gcm", testKeys(b)},
		{"v1-aes256gcm-random96", randomNonceAEAD{gcm}},
		{"xchacha20poly1305", randomNonceAEAD{xc}},
	}
	for _, size := range []struct {
		name string
		n    int
	}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}} {
		plain := make([]byte, size.n)
		_, _ = rand.Read(plain)
		ad := make([]byte, 32)
		for _, s := range schemes {
			b.Run(size.name+"/"+s.name, func(b *testing.B) {
				b.SetBytes(int64(size.n))
				var sealed, opened []byte
				for b.Loop() {
					sealed = s.s.Seal(sealed, plain, ad)
					var err error
					if opened, err = s.s.Open(opened[:0], sealed, ad); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
