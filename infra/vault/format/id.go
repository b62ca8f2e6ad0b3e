package format

import (
	"encoding/hex"
	"fmt"
)

// ID identifies a blob: the keyed BLAKE3-256 hash of its plaintext.
type ID [32]byte

// ZeroID stands for an all-zero block, which is never stored.
var ZeroID ID

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

func (id ID) IsZero() bool { return id == ZeroID }

// ParseID parses a 64-digit hex id.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("invalid id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}
