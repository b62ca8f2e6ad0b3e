package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// editConfig rewrites the stored config's JSON with edit.
func editConfig(t *testing.T, be *memBackend, edit func(map[string]any)) {
	t.Helper()
	data, err := be.Get(context.Background(), format.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := be.Put(context.Background(), format.ConfigKey, data); err != nil {
		t.Fatal(err)
	}
}

func TestConfigAltered(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(map[string]any)
	}{
		{"id", func(m map[string]any) { m["id"] = "6f1b2c1e-0000-4000-8000-000000000000" }},
		{"created_at", func(m map[string]any) { m["created_at"] = "2020-01-01T00:00:00Z" }},
		{"block_size", func(m map[string]any) { m["block_size"] = 2 * testBlock }},
		{"pack_size", func(m map[string]any) { m["pack_size"] = 512 << 10 }},
		{"leaf_entries", func(m map[string]any) { m["leaf_entries"] = 16 }},
		{"compression", func(m map[string]any) { m["compression"] = format.CompressionZstd }},
		{"mac", func(m map[string]any) { m["mac"] = strings.Repeat("A", 43) + "=" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			_, be := testVault(t)
			editConfig(t, be, tc.edit)
			_, err := Open(context.Background(), be, []byte(testSecret))
			if !errors.Is(err, format.ErrCorrupt) || errors.Is(err, format.ErrWrongKey) || !strings.Contains(err.Error(), "config was altered") {
				t.Fatalf("open after editing %s: %v", tc.field, err)
			}
		})
	}
	// The KDF's inputs decide the wrapping key, so editing them reads as a wrong key.
	for _, tc := range []struct {
		field string
		edit  func(kdf map[string]any)
	}{
		{"kdf.time", func(kdf map[string]any) { kdf["time"] = 2 }},
		{"kdf.memory_kib", func(kdf map[string]any) { kdf["memory_kib"] = 2 * testKDFMemoryKiB }},
		{"kdf.threads", func(kdf map[string]any) { kdf["threads"] = 2 }},
		{"kdf.salt", func(kdf map[string]any) { kdf["salt"] = strings.Repeat("A", 43) + "=" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			_, be := testVault(t)
			editConfig(t, be, func(m map[string]any) { tc.edit(m["kdf"].(map[string]any)) })
			if _, err := Open(context.Background(), be, []byte(testSecret)); !errors.Is(err, format.ErrWrongKey) {
				t.Fatalf("open after editing %s: %v", tc.field, err)
			}
		})
	}
}

func TestInitRace(t *testing.T) {
	be := newMem()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Init(context.Background(), be, fmt.Appendf(nil, "%s %d", testSecret, i), cheapInit())
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("inits %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, format.ErrVaultExists):
			t.Fatalf("losing init %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no init won")
	}
	for i := range n {
		_, err := Open(context.Background(), be, fmt.Appendf(nil, "%s %d", testSecret, i))
		if (err == nil) != (i == winner) {
			t.Fatalf("open with the secret of init %d (winner %d): %v", i, winner, err)
		}
	}
}

// racyBackend hides the config from Stat, as if another Init wrote it after
// this one looked: PutIfAbsent alone must refuse.
type racyBackend struct{ *memBackend }

func (racyBackend) Stat(context.Context, string) (int64, error) { return 0, storage.ErrNotFound }

func TestInitExistsAtPut(t *testing.T) {
	_, be := testVault(t)
	if _, err := Init(context.Background(), racyBackend{be}, []byte("another secret, long enough"), cheapInit()); !errors.Is(err, format.ErrVaultExists) {
		t.Fatalf("init over a vault written after Stat: %v", err)
	}
	if _, err := Open(context.Background(), be, []byte(testSecret)); err != nil {
		t.Fatalf("the first vault no longer opens: %v", err)
	}
}

func cheapInit() InitOptions {
	return InitOptions{BlockSize: testBlock, PackSize: 256 << 10, LeafEntries: 8, KDFMemoryKiB: testKDFMemoryKiB, KDFTime: 1, KDFThreads: 1}
}

func TestChangeKey(t *testing.T) {
	ctx := context.Background()
	v, be := testVault(t)
	disk := mixedDisk(5, 20*testBlock)
	r, err := v.BackupDisk(ctx, disk, BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	cheap := format.KeyOptions{KDFMemoryKiB: testKDFMemoryKiB, KDFTime: 1, KDFThreads: 1}
	newSecret := []byte("the new vault secret")
	if err := v.ChangeKey(ctx, []byte("not the secret!!"), newSecret, cheap); !errors.Is(err, format.ErrWrongKey) {
		t.Fatalf("change key with a wrong old secret: %v", err)
	}
	if err := v.ChangeKey(ctx, []byte(testSecret), []byte("short"), cheap); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Fatalf("change to a short secret: %v", err)
	}
	before, _ := be.Get(ctx, format.ConfigKey)
	if err := v.ChangeKey(ctx, []byte(testSecret), newSecret, format.KeyOptions{KDFMemoryKiB: 2 * testKDFMemoryKiB, KDFTime: 2, KDFThreads: 1}); err != nil {
		t.Fatal(err)
	}
	after, _ := be.Get(ctx, format.ConfigKey)
	if bytes.Equal(before, after) {
		t.Fatal("config unchanged")
	}
	if c := v.Config(); c.KDF.Time != 2 || c.KDF.MemoryKiB != 2*testKDFMemoryKiB {
		t.Fatalf("open vault's config has kdf %+v", c.KDF)
	}
	if _, err := Open(ctx, be, []byte(testSecret)); !errors.Is(err, format.ErrWrongKey) {
		t.Fatalf("old secret after change: %v", err)
	}
	v2, err := Open(ctx, be, newSecret)
	if err != nil {
		t.Fatalf("new secret: %v", err)
	}
	if got := restoreDisk(t, v2, r.Root, disk.Size()); !bytes.Equal(got, disk) {
		t.Fatal("backup from before the key change does not restore")
	}
	// The vault still writes with the same keys: a backup after the change
	// reads back through a fresh Open.
	r2, err := v.BackupDisk(ctx, mixedDisk(6, 20*testBlock), BackupOptions{Disk: "d"})
	if err != nil {
		t.Fatal(err)
	}
	v3, err := Open(ctx, be, newSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := restoreDisk(t, v3, r2.Root, disk.Size()); !bytes.Equal(got, mixedDisk(6, 20*testBlock)) {
		t.Fatal("backup from after the key change does not restore")
	}
	// v still holds the config it had: its old secret no longer opens storage.
	if err := v.ChangeKey(ctx, []byte(testSecret), []byte("a third secret value"), cheap); !errors.Is(err, format.ErrWrongKey) {
		t.Fatalf("change key with the replaced secret: %v", err)
	}
}

func TestFormatVersion(t *testing.T) {
	for _, tc := range []struct {
		version int
		want    []string
	}{
		{1, []string{"has format version 1; this build reads version 3", "cannot be opened by this build"}},
		{2, []string{"has format version 2; this build reads version 3", "cannot be opened by this build"}},
		{4, []string{"has format version 4; this build reads version 3"}},
		{0, []string{"has format version 0; this build reads version 3"}},
	} {
		_, be := testVault(t)
		editConfig(t, be, func(m map[string]any) { m["version"] = tc.version })
		_, err := Open(context.Background(), be, []byte(testSecret))
		if !errors.Is(err, format.ErrFormatVersion) {
			t.Fatalf("version %d: %v", tc.version, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("version %d: %q does not say %q", tc.version, err, w)
			}
		}
	}
}

func TestSecretLength(t *testing.T) {
	_, err := Init(context.Background(), newMem(), []byte("11 bytes..."), cheapInit())
	if err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Fatalf("init with an 11-byte secret: %v", err)
	}
	// Key files from `make up`: 32 random bytes in base64.
	if _, err := Init(context.Background(), newMem(), []byte("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80="), cheapInit()); err != nil {
		t.Fatalf("init with a generated key: %v", err)
	}
}

func TestKDFBounds(t *testing.T) {
	p, err := format.NewKDFParams(format.KeyOptions{})
	if err != nil || p.Time != format.DefaultKDFTime || p.MemoryKiB != format.DefaultKDFMemoryKiB || p.Threads != format.DefaultKDFThreads {
		t.Fatalf("defaults: %+v %v", p, err)
	}
	// Outside the package's tests the floor is 8 MiB.
	weak := format.KDFParams{Algorithm: format.KDFArgon2id, Time: 1, MemoryKiB: format.MinKDFMemoryKiB - 1, Threads: 1}
	if err := weak.CheckMin(format.MinKDFMemoryKiB); err == nil {
		t.Fatal("KDF memory below 8 MiB accepted")
	}
	for _, opt := range []format.KeyOptions{
		{KDFMemoryKiB: format.MaxKDFMemoryKiB + 1},
		{KDFTime: format.MaxKDFTime + 1},
		{KDFThreads: format.MaxKDFThreads + 1},
		{KDFThreads: 300}, // would wrap in a uint8
		{KDFTime: -1},
	} {
		if _, err := format.NewKDFParams(opt); err == nil {
			t.Fatalf("%+v accepted", opt)
		}
	}
	if _, err := Init(context.Background(), newMem(), []byte(testSecret), InitOptions{KDFMemoryKiB: 4 << 20}); err == nil {
		t.Fatal("init with 4 GiB of KDF memory accepted")
	}
}

// A hostile config asking for more KDF memory or time than the caps is
// refused before the KDF runs.
func TestOpenHugeKDF(t *testing.T) {
	for _, edit := range []func(map[string]any){
		func(kdf map[string]any) { kdf["memory_kib"] = 1 << 31 },
		func(kdf map[string]any) { kdf["time"] = 1 << 30 },
		func(kdf map[string]any) { kdf["threads"] = 255 },
		func(kdf map[string]any) { kdf["algorithm"] = "scrypt" },
	} {
		_, be := testVault(t)
		editConfig(t, be, func(m map[string]any) { edit(m["kdf"].(map[string]any)) })
		if _, err := Open(context.Background(), be, []byte(testSecret)); !errors.Is(err, format.ErrCorrupt) {
			t.Fatalf("hostile kdf: %v", err)
		}
	}
}
