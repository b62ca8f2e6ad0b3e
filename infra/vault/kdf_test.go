package vault

import "github.com/vmvault/vmvault/infra/vault/format"

// The package's tests use a cheap KDF: the floor that protects real vaults
// would make each Init and Open cost tens of milliseconds.
func init() { format.LowerKDFFloorForTests(testKDFMemoryKiB) }

const (
	testSecret       = "test secret, 12+ bytes"
	testKDFMemoryKiB = 64
)
