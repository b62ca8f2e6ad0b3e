package maint

import (
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/internal/vaulttest"
)

type ID = format.ID

func testVault(t *testing.T) (*maintainer, *vaulttest.Mem) {
	t.Helper()
	r, be := vaulttest.NewRepo(t)
	return &maintainer{r}, be
}
