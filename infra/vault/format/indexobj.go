package format

import (
	"encoding/binary"
	"fmt"
)

// Index objects: one per pack, listing its blobs (package index holds the
// in-memory index built from them).

// IndexEntry is one blob of a pack, as written in index objects.
type IndexEntry struct {
	ID     ID       `json:"id"`
	Offset uint32   `json:"off"`
	Length uint32   `json:"len"`
	Type   BlobType `json:"type"`
}

// PackIndex is the content of one index object: the blobs of one pack.
type PackIndex struct {
	Pack    ID           `json:"pack"`
	Size    int64        `json:"size"`
	Entries []IndexEntry `json:"entries"`
}

// Index objects (format 3) are named index/<bucket>/<ms>-<pack> (see
// IndexKeyAt): ms is the
// writer's clock in Unix milliseconds as 12 hex digits and bucket its first
// 6 (about 4.7 hours), so the names sort by time and a refresh lists only
// the ones written since it last looked (storage.ListAfter: S3's
// StartAfter; a directory vault skips whole earlier buckets) instead of
// every one. Their plaintext is binary: the pack id (32 bytes), the pack's
// size (8 bytes little-endian), then one packEntryLen record per blob, laid
// out as in the pack's own header.
const indexHeadLen = 32 + 8

// EncodePackIndex is the plaintext of pi's index object.
func EncodePackIndex(pi PackIndex) []byte {
	out := make([]byte, 0, indexHeadLen+len(pi.Entries)*PackEntryLen)
	out = append(out, pi.Pack[:]...)
	out = binary.LittleEndian.AppendUint64(out, uint64(pi.Size))
	return AppendPackEntries(out, pi.Entries)
}

// DecodePackIndex decodes the plaintext of the index object at key and
// checks that it is self-consistent: it names the pack of its key, and every
// blob lies inside the pack's body.
func DecodePackIndex(key string, data []byte) (PackIndex, error) {
	want, _, ok := ParseIndexKey(key)
	if !ok {
		return PackIndex{}, fmt.Errorf("%s: %w: not an index object key", key, ErrCorrupt)
	}
	if len(data) < indexHeadLen {
		return PackIndex{}, fmt.Errorf("%s: %w: index object of %d bytes", key, ErrCorrupt, len(data))
	}
	var pi PackIndex
	copy(pi.Pack[:], data)
	if pi.Pack != want {
		return PackIndex{}, fmt.Errorf("%s: %w: names pack %s", key, ErrCorrupt, pi.Pack.Short())
	}
	size := binary.LittleEndian.Uint64(data[32:])
	if size < 4 || size > 1<<40 {
		return PackIndex{}, fmt.Errorf("%s: %w: pack size %d", key, ErrCorrupt, size)
	}
	pi.Size = int64(size)
	entries, err := DecodePackHeader(data[indexHeadLen:], int(pi.Size-4))
	if err != nil {
		return PackIndex{}, fmt.Errorf("%s: %w", key, err)
	}
	pi.Entries = entries
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

// BlobType tells data blocks from tree nodes.
type BlobType uint8

const (
	BlobData BlobType = 1
	BlobTree BlobType = 2
)
