package vault

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Index objects: one per pack, listing its blobs (index.go holds the
// in-memory index built from them).

// indexEntry is one blob of a pack, as written in index objects.
type indexEntry struct {
	ID     ID       `json:"id"`
	Offset uint32   `json:"off"`
	Length uint32   `json:"len"`
	Type   BlobType `json:"type"`
}

// packIndex is the content of one index object: the blobs of one pack.
type packIndex struct {
	Pack    ID           `json:"pack"`
	Size    int64        `json:"size"`
	Entries []indexEntry `json:"entries"`
}

// decodePackIndex decodes the plaintext of the index object at key and
// checks that it is self-consistent: it names the pack of its key, and every
// blob lies inside the pack's body.
func decodePackIndex(key string, data []byte) (packIndex, error) {
	var pi packIndex
	if err := json.Unmarshal(data, &pi); err != nil {
		return packIndex{}, fmt.Errorf("%s: %w: %v", key, ErrCorrupt, err)
	}
	if want := strings.TrimPrefix(key, "index/"); want != pi.Pack.String() {
		return packIndex{}, fmt.Errorf("%s: %w: names pack %s", key, ErrCorrupt, pi.Pack.Short())
	}
	if pi.Size < 4 {
		return packIndex{}, fmt.Errorf("%s: %w: pack size %d", key, ErrCorrupt, pi.Size)
	}
	for _, e := range pi.Entries {
		if e.Type != BlobData && e.Type != BlobTree || e.Length == 0 || int64(e.Offset)+int64(e.Length) > pi.Size-4 {
			return packIndex{}, fmt.Errorf("%s: %w: blob %s at %d+%d (type %d) outside pack of %d bytes", key, ErrCorrupt, e.ID.Short(), e.Offset, e.Length, e.Type, pi.Size)
		}
	}
	return pi, nil
}

// IndexProblemKind says what is wrong with an index object or its pack.
type IndexProblemKind string

const (
	// ProblemUnreadableIndex: the index object fails to authenticate or
	// decode; its pack is treated as unindexed (Repair re-indexes it).
	ProblemUnreadableIndex IndexProblemKind = "unreadable_index"
	// ProblemMissingPack: the index object names a pack that is not stored.
	ProblemMissingPack IndexProblemKind = "missing_pack"
	// ProblemPackSize: the pack's size differs from its index object's
	// (truncated or overwritten).
	ProblemPackSize IndexProblemKind = "pack_size"
)

// IndexProblem is an index object the index left out, and why. The blobs it
// lists count as not stored: the next backup stores them again.
type IndexProblem struct {
	Kind   IndexProblemKind `json:"kind"`
	Key    string           `json:"key"` // the index object
	Pack   ID               `json:"pack"`
	Reason string           `json:"reason"`
}

func (p IndexProblem) String() string { return fmt.Sprintf("%s: %s", p.Key, p.Reason) }

func indexKey(pack ID) string { return "index/" + pack.String() }

func packKey(pack ID) string {
	h := pack.String()
	return "packs/" + h[:2] + "/" + h
}
