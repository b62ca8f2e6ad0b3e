package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
)

// swapConfig is a primary whose config is swapped after its first read
// (someone with the primary's credentials, between the check and the copy).
type swapConfig struct {
	storage.Backend
	mu      sync.Mutex
	armed   bool
	reads   int
	swapped []byte
}

func (s *swapConfig) Get(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	if key == format.ConfigKey && s.armed {
		s.reads++
		if s.reads > 1 {
			s.mu.Unlock()
			return s.swapped, nil
		}
	}
	s.mu.Unlock()
	return s.Backend.Get(ctx, key)
}

type diskBytes []byte

func (d diskBytes) ReadAt(p []byte, off int64) (int, error) { return copy(p, d[off:]), nil }
func (d diskBytes) Size() int64                             { return int64(len(d)) }

type memWriter struct{ b []byte }

func (w *memWriter) WriteAt(p []byte, off int64) (int, error) { return copy(w.b[off:], p), nil }

// The replication copies the config bytes it authenticated: a config
// swapped on the primary after the worker checked it never replaces the
// secondary's (its only wrapped key), and the secondary still opens and
// restores.
func TestReplicateVaultCopiesTheAuthenticatedConfig(t *testing.T) {
	ctx := context.Background()
	secret := []byte("activities test key")
	v := testVault(t)
	disk := make(diskBytes, 3<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range disk {
		disk[i] = byte(r.Uint32())
	}
	res, err := v.BackupDisk(ctx, disk, vault.BackupOptions{Disk: "os"})
	if err != nil {
		t.Fatal(err)
	}
	rp := vault.RecoveryPoint{ID: "20260101T000000Z-abcdef", VM: "web1", StartedAt: time.Now(), CompletedAt: time.Now(),
		Metadata: []byte(`{}`), Disks: []vault.DiskRecord{{Name: "os", SizeBytes: disk.Size(), Root: res.Root}}}
	if err := v.SaveRecoveryPoint(ctx, rp); err != nil {
		t.Fatal(err)
	}
	secBE, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good, err := v.Storage().Get(ctx, format.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	var cfg format.Config
	if err := json.Unmarshal(good, &cfg); err != nil {
		t.Fatal(err)
	}
	for i := range cfg.WrappedKey {
		cfg.WrappedKey[i] ^= 0x5a
	}
	swapped, _ := json.Marshal(cfg)
	primary := &swapConfig{Backend: v.Storage(), swapped: swapped}
	pv, err := v.OnStorage(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &VaultActivities{Vault: pv, Secondary: &Secondary{Storage: secBE}}
	env.RegisterActivity(a)
	if _, err := env.ExecuteActivity(a.ReplicateVault, ReplicateInput{}); err != nil {
		t.Fatal(err)
	}
	primary.mu.Lock()
	primary.armed = true
	primary.mu.Unlock()
	_, err = env.ExecuteActivity(a.ReplicateVault, ReplicateInput{})
	t.Logf("replication after the swap: %v", err)
	if got, err := secBE.Get(ctx, format.ConfigKey); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("the secondary's config was replaced by the swapped one (%v)", err)
	}
	sv, err := vault.Open(ctx, secBE, secret)
	if err != nil {
		t.Fatalf("the secondary no longer opens: %v", err)
	}
	w := &memWriter{b: make([]byte, len(disk))}
	if _, err := sv.RestoreDisk(ctx, res.Root, w, vault.RestoreOptions{Disk: "os"}); err != nil {
		t.Fatalf("restore from the secondary: %v", err)
	}
	if !bytes.Equal(w.b, disk) {
		t.Fatal("the disk restored from the secondary differs from what was backed up")
	}
}
