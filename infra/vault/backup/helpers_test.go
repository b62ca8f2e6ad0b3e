package backup

import (
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/internal/vaulttest"
)

// The vault's test vocabulary, from vaulttest.

type (
	ID         = format.ID
	memBackend = vaulttest.Mem
	memDisk    = vaulttest.Disk
)

const (
	testBlock        = vaulttest.Block
	testSecret       = vaulttest.Secret
	testKDFMemoryKiB = vaulttest.KDFMemoryKiB
)

func newMem() *memBackend                     { return vaulttest.NewMem() }
func mixedDisk(seed uint64, size int) memDisk { return vaulttest.MixedDisk(seed, size) }

func testVault(t *testing.T) (*archiver, *memBackend) {
	t.Helper()
	r, be := vaulttest.NewRepo(t)
	return &archiver{r}, be
}
