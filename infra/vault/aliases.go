package vault

import "github.com/vmvault/vmvault/infra/vault/format"

// The format's vocabulary under the names callers use.

// ID identifies a blob: the keyed BLAKE3-256 hash of its plaintext.
type ID = format.ID

// ZeroID stands for an all-zero block, which is never stored.
var ZeroID = format.ZeroID

// ParseID parses an id's hex form.
func ParseID(s string) (ID, error) { return format.ParseID(s) }
