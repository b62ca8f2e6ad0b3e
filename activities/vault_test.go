package activities

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
)

func testVault(t *testing.T) *vault.Vault {
	t.Helper()
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Init(context.Background(), be, []byte("activities test key"), vault.InitOptions{KDFMemoryKiB: vault.MinKDFMemoryKiB, KDFTime: 1})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A root the central worker cannot see yet (S3 listing lag) is retried; a
// job pinned to another vault is refused for good, naming both vaults.
func TestSaveRecoveryPointErrors(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &VaultActivities{Vault: testVault(t)}
	env.RegisterActivity(a)
	rp := vault.RecoveryPoint{ID: "20260101T000000Z-abcdef", VM: "web1", Disks: []vault.DiskRecord{{Name: "os", Root: vault.ID{1}}}}

	_, err := env.ExecuteActivity(a.SaveRecoveryPoint, SaveRecoveryPointInput{Vault: pinOf(a.Vault), RecoveryPoint: rp})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeIndexLag || app.NonRetryable() {
		t.Fatalf("missing root: got %v, want a retryable %s error", err, ErrTypeIndexLag)
	}

	_, err = env.ExecuteActivity(a.SaveRecoveryPoint, SaveRecoveryPointInput{Vault: VaultPin{ID: "other", Location: "s3://elsewhere"}, RecoveryPoint: rp})
	if !errors.As(err, &app) || app.Type() != ErrTypeVaultMismatch || !app.NonRetryable() {
		t.Fatalf("other vault: got %v, want a non-retryable %s error", err, ErrTypeVaultMismatch)
	}
}

// A parent whose audit found a disk's tracking missing changes passes no
// snapshot token for that disk, so the next backup compares its checksums,
// and says why; the other disk keeps its token.
func TestPrepareBackupDistrustsAFailedAudit(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &VaultActivities{Vault: testVault(t)}
	env.RegisterActivity(a)
	r, err := a.Vault.BackupDisk(context.Background(), diskBytes(make([]byte, 1<<20)), vault.BackupOptions{Disk: "os"})
	if err != nil {
		t.Fatal(err)
	}
	rp := vault.RecoveryPoint{ID: "20260101T000000Z-abcdef", VM: "web1", SnapshotToken: "tok", Disks: []vault.DiskRecord{
		{Name: "os", Root: r.Root, Method: vault.MethodChecksum, Stats: vault.DiskStats{AuditedBlocks: 9, AuditMissed: 2}},
		{Name: "data0", Root: r.Root, Method: vault.MethodCBT, Stats: vault.DiskStats{AuditedBlocks: 9}},
	}}
	if _, err := env.ExecuteActivity(a.SaveRecoveryPoint, SaveRecoveryPointInput{Vault: pinOf(a.Vault), RecoveryPoint: rp}); err != nil {
		t.Fatal(err)
	}
	v, err := env.ExecuteActivity(a.PrepareBackup, PrepareBackupInput{VM: "web1", Disks: []string{"os", "data0"}})
	if err != nil {
		t.Fatal(err)
	}
	var prep PrepareBackupResult
	if err := v.Get(&prep); err != nil {
		t.Fatal(err)
	}
	if len(prep.ParentTokens) != 1 || prep.ParentTokens["data0"] != "tok" || len(prep.ParentRoots) != 2 {
		t.Fatalf("tokens %v, roots %v: want data0's token only, both roots", prep.ParentTokens, prep.ParentRoots)
	}
	if len(prep.Notes) != 1 || !strings.HasPrefix(prep.Notes[0], "disk os: cbt: not trusted since the audit of web1/20260101T000000Z-abcdef found") {
		t.Fatalf("notes %q", prep.Notes)
	}
}
