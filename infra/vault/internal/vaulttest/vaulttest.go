// Package vaulttest has the helpers the vault's packages test with: an
// in-memory storage backend, disks in memory and small test vaults.
package vaulttest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Mem is an in-memory storage.Backend that counts puts.
type Mem struct {
	Mu   sync.Mutex        // guards Objs and Puts (tests reading them take it)
	Objs map[string][]byte // by key
	Puts map[string]int    // puts of each key
}

// NewMem is an empty Mem.
func NewMem() *Mem {
	return &Mem{Objs: map[string][]byte{}, Puts: map[string]int{}}
}

func (m *Mem) Location() string { return "mem://" }
func (m *Mem) Put(_ context.Context, k string, d []byte) error {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	m.Objs[k] = append([]byte(nil), d...)
	m.Puts[k]++
	return nil
}
func (m *Mem) PutIfAbsent(_ context.Context, k string, d []byte) error {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	if _, ok := m.Objs[k]; ok {
		return fmt.Errorf("put %s: %w", k, storage.ErrExists)
	}
	m.Objs[k] = append([]byte(nil), d...)
	m.Puts[k]++
	return nil
}
func (m *Mem) Get(_ context.Context, k string) ([]byte, error) {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	d, ok := m.Objs[k]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", k, storage.ErrNotFound)
	}
	return append([]byte(nil), d...), nil
}
func (m *Mem) GetRange(ctx context.Context, k string, off, n int64) ([]byte, error) {
	d, err := m.Get(ctx, k)
	if err != nil {
		return nil, err
	}
	if off+n > int64(len(d)) {
		return nil, fmt.Errorf("get %s range %d+%d: %w", k, off, n, storage.ErrRange)
	}
	return d[off : off+n], nil
}
func (m *Mem) Stat(ctx context.Context, k string) (int64, error) {
	d, err := m.Get(ctx, k)
	return int64(len(d)), err
}
func (m *Mem) Delete(_ context.Context, k string) error {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	delete(m.Objs, k)
	return nil
}
func (m *Mem) List(ctx context.Context, p string, fn func(string, int64) error) error {
	return m.ListAfter(ctx, p, "", fn)
}
func (m *Mem) ListAfter(_ context.Context, p, after string, fn func(string, int64) error) error {
	m.Mu.Lock()
	var keys []string
	for k := range m.Objs {
		if strings.HasPrefix(k, p) && k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	sizes := map[string]int64{}
	for _, k := range keys {
		sizes[k] = int64(len(m.Objs[k]))
	}
	m.Mu.Unlock()
	for _, k := range keys {
		if err := fn(k, sizes[k]); err != nil {
			return err
		}
	}
	return nil
}

// Disk is a disk in memory.
type Disk []byte

func (d Disk) ReadAt(p []byte, off int64) (int, error) { return copy(p, d[off:]), nil }
func (d Disk) Size() int64                             { return int64(len(d)) }

// Keys are the stored keys under prefix, sorted.
func (m *Mem) Keys(prefix string) []string {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	var keys []string
	for k := range m.Objs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Block is the block size of test vaults.
const Block = 64 << 10

// Secret opens test vaults.
const Secret = "test secret, 12+ bytes"

// KDFMemoryKiB is the test vaults' cheap KDF (see format.LowerKDFFloorForTests).
const KDFMemoryKiB = 64

func init() { format.LowerKDFFloorForTests(KDFMemoryKiB) }

// InitOptions make a small test vault: 64 KiB blocks, 256 KiB packs,
// leaves of 8 blocks, a cheap KDF.
func InitOptions() repo.InitOptions {
	return repo.InitOptions{BlockSize: Block, PackSize: 256 << 10, LeafEntries: 8, KDFMemoryKiB: KDFMemoryKiB, KDFTime: 1, KDFThreads: 1}
}

// NewRepo is a test vault on a new Mem.
func NewRepo(t testing.TB) (*repo.Repo, *Mem) {
	t.Helper()
	be := NewMem()
	r, err := repo.Init(context.Background(), be, []byte(Secret), InitOptions())
	if err != nil {
		t.Fatal(err)
	}
	return r, be
}

// MixedDisk has random blocks, compressible blocks and zero blocks, and a
// size that is not a multiple of the block size.
func MixedDisk(seed uint64, size int) Disk {
	r := rand.New(rand.NewPCG(seed, 1))
	d := make(Disk, size)
	for off := 0; off < size; off += Block {
		end := min(off+Block, size)
		switch (off / Block) % 4 {
		case 0:
			for i := off; i < end; i++ {
				d[i] = byte(r.Uint32())
			}
		case 1:
			copy(d[off:end], bytes.Repeat([]byte("vmvault "), Block/8))
		case 2: // zero
		case 3:
			for i := off; i < end; i += 7 {
				d[i] = byte(r.Uint32())
			}
		}
	}
	return d
}
