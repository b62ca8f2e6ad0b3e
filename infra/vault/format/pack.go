package format

import (
	"encoding/binary"
	"fmt"
)

// A pack is its blobs, then a sealed header listing them (PackEntryLen
// bytes each: type, id, offset, length, little-endian), then the sealed
// header's length as 4 bytes little-endian. Its name is the keyed hash of
// all of it.
const (
	PackEntryLen = 1 + 32 + 4 + 4
	PackHeaderAD = "pack-header"
)

// AppendPackEntries appends entries in the pack header's layout.
func AppendPackEntries(out []byte, entries []IndexEntry) []byte {
	for _, e := range entries {
		out = append(out, byte(e.Type))
		out = append(out, e.ID[:]...)
		out = binary.LittleEndian.AppendUint32(out, e.Offset)
		out = binary.LittleEndian.AppendUint32(out, e.Length)
	}
	return out
}

// SplitPack cuts a whole pack into its body (the blobs) and sealed header.
func SplitPack(pack []byte) (body, sealedHeader []byte, err error) {
	if len(pack) < 4 {
		return nil, nil, fmt.Errorf("%w: pack of %d bytes", ErrCorrupt, len(pack))
	}
	n := int64(binary.LittleEndian.Uint32(pack[len(pack)-4:]))
	if n > int64(len(pack)-4) {
		return nil, nil, fmt.Errorf("%w: pack header of %d bytes in a pack of %d", ErrCorrupt, n, len(pack))
	}
	h := len(pack) - 4 - int(n)
	return pack[:h], pack[h : len(pack)-4], nil
}

// DecodePackHeader decodes a pack header's plaintext; every blob it lists
// must lie inside a body of bodyLen bytes.
func DecodePackHeader(plain []byte, bodyLen int) ([]IndexEntry, error) {
	if len(plain)%PackEntryLen != 0 {
		return nil, fmt.Errorf("%w: pack header of %d bytes", ErrCorrupt, len(plain))
	}
	entries := make([]IndexEntry, len(plain)/PackEntryLen)
	for i := range entries {
		b := plain[i*PackEntryLen:]
		e := IndexEntry{Type: BlobType(b[0]), Offset: binary.LittleEndian.Uint32(b[33:]), Length: binary.LittleEndian.Uint32(b[37:])}
		copy(e.ID[:], b[1:33])
		if e.Type != BlobData && e.Type != BlobTree || e.Length == 0 || int64(e.Offset)+int64(e.Length) > int64(bodyLen) {
			return nil, fmt.Errorf("%w: pack header entry %d: blob %s at %d+%d (type %d) outside a body of %d bytes",
				ErrCorrupt, i, e.ID.Short(), e.Offset, e.Length, e.Type, bodyLen)
		}
		entries[i] = e
	}
	return entries, nil
}

// OpenPackHeader opens a pack's sealed header and decodes the blobs it
// lists, each inside a body of bodyLen bytes: the one way a whole pack
// (repair) or its tail (GC) is read.
func OpenPackHeader(k *Keys, sealed []byte, bodyLen int) ([]IndexEntry, error) {
	plain, err := k.Open(nil, sealed, []byte(PackHeaderAD))
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	return DecodePackHeader(plain, bodyLen)
}
