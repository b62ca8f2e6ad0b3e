package activities

import (
	"context"
	"errors"
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
