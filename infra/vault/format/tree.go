package format

import (
	"encoding/binary"
	"fmt"
)

var (
	leafMagic = [4]byte{'V', 'V', 'L', '1'}
	rootMagic = [4]byte{'V', 'V', 'R', '1'}
)

// Root is the top of a disk's block map.
type Root struct {
	Size      int64
	BlockSize int
	// LeafEntries is the number of block ids per leaf (the last may hold fewer).
	LeafEntries int
	Leaves      []ID
}

// Blocks is the number of blocks of the disk.
func (r Root) Blocks() int64 { return (r.Size + int64(r.BlockSize) - 1) / int64(r.BlockSize) }

// EncodeRoot is the plaintext of a tree root blob.
func EncodeRoot(r Root) []byte {
	b := make([]byte, 0, 4+8+4+4+4+len(r.Leaves)*32)
	b = append(b, rootMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Size))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.BlockSize))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.LeafEntries))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Leaves)))
	for _, id := range r.Leaves {
		b = append(b, id[:]...)
	}
	return b
}

// DecodeRoot decodes a tree root blob's plaintext (ErrCorrupt if it is not one).
func DecodeRoot(b []byte) (Root, error) {
	var r Root
	if len(b) < 24 || [4]byte(b[:4]) != rootMagic {
		return r, fmt.Errorf("%w: not a tree root", ErrCorrupt)
	}
	r.Size = int64(binary.LittleEndian.Uint64(b[4:]))
	r.BlockSize = int(binary.LittleEndian.Uint32(b[12:]))
	r.LeafEntries = int(binary.LittleEndian.Uint32(b[16:]))
	n := int64(binary.LittleEndian.Uint32(b[20:]))
	b = b[24:]
	// The length is checked before anything is allocated for the leaves.
	if int64(len(b)) != n*32 || r.Size < 0 || r.BlockSize <= 0 || r.LeafEntries <= 0 {
		return r, fmt.Errorf("%w: tree root has bad length", ErrCorrupt)
	}
	if want := (r.Blocks() + int64(r.LeafEntries) - 1) / int64(r.LeafEntries); int64(n) != want {
		return r, fmt.Errorf("%w: tree root has %d leaves, size needs %d", ErrCorrupt, n, want)
	}
	r.Leaves = make([]ID, n)
	for i := range r.Leaves {
		copy(r.Leaves[i][:], b[i*32:])
	}
	return r, nil
}

// EncodeLeaf is the plaintext of a tree leaf blob listing ids.
func EncodeLeaf(ids []ID) []byte {
	b := make([]byte, 0, 4+len(ids)*32)
	b = append(b, leafMagic[:]...)
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// DecodeLeaf decodes a tree leaf blob's plaintext (ErrCorrupt if it is not one).
func DecodeLeaf(b []byte) ([]ID, error) {
	if len(b) < 4 || [4]byte(b[:4]) != leafMagic || (len(b)-4)%32 != 0 {
		return nil, fmt.Errorf("%w: not a tree leaf", ErrCorrupt)
	}
	ids := make([]ID, (len(b)-4)/32)
	for i := range ids {
		copy(ids[i][:], b[4+i*32:])
	}
	return ids, nil
}
