package format

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// The decoders of vault data never panic on any input, fail only with
// ErrCorrupt, and allocate no more than their input's size allows.

func fuzzErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: error not wrapping ErrCorrupt: %v", what, err)
	}
}

func FuzzDecodePackIndex(f *testing.F) {
	p := ID{1, 2, 3}
	key := IndexKeyAt(p, time.UnixMilli(1_700_000_000_000))
	f.Add(key, EncodePackIndex(PackIndex{Pack: p, Size: 100, Entries: []IndexEntry{{ID: ID{9}, Offset: 0, Length: 50, Type: BlobData}}}))
	f.Add(key, EncodePackIndex(PackIndex{Pack: p, Size: 3}))
	f.Add("index/"+p.String(), EncodePackIndex(PackIndex{Pack: p, Size: 100}))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		pi, err := DecodePackIndex(key, data)
		fuzzErr(t, "pack index", err)
		if err != nil {
			return
		}
		for _, e := range pi.Entries {
			if int64(e.Offset)+int64(e.Length) > pi.Size-4 {
				t.Fatalf("blob outside its pack: %+v in %d", e, pi.Size)
			}
		}
	})
}

func FuzzPackHeader(f *testing.F) {
	h := make([]byte, PackEntryLen)
	h[0] = byte(BlobData)
	binary.LittleEndian.PutUint32(h[37:], 10)
	f.Add(append(make([]byte, 10), binary.LittleEndian.AppendUint32(h, uint32(len(h)))...), h, 10)
	f.Add([]byte{1, 2, 3}, []byte{}, 0)
	f.Fuzz(func(t *testing.T, pack, plain []byte, bodyLen int) {
		body, sealed, err := SplitPack(pack)
		fuzzErr(t, "split pack", err)
		if err == nil && len(body)+len(sealed)+4 != len(pack) {
			t.Fatalf("split %d bytes into %d and %d", len(pack), len(body), len(sealed))
		}
		bodyLen &= 1<<31 - 1
		entries, err := DecodePackHeader(plain, bodyLen)
		fuzzErr(t, "pack header", err)
		for _, e := range entries {
			if int64(e.Offset)+int64(e.Length) > int64(bodyLen) {
				t.Fatalf("blob outside the body: %+v", e)
			}
		}
	})
}

// testBlock is the block size of the vault package's tests.
const testBlock = 64 << 10

func FuzzDecodeRoot(f *testing.F) {
	f.Add(EncodeRoot(Root{Size: 3 * testBlock, BlockSize: testBlock, LeafEntries: 2, Leaves: []ID{{1}, {2}}}))
	huge := EncodeRoot(Root{Size: 1 << 50, BlockSize: 1, LeafEntries: 1})
	binary.LittleEndian.PutUint32(huge[20:], 1<<32-1) // a leaf count the input cannot hold
	f.Add(huge)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRoot(b)
		fuzzErr(t, "root", err)
		if err == nil && len(r.Leaves)*32 > len(b) {
			t.Fatalf("%d leaves from %d bytes", len(r.Leaves), len(b))
		}
	})
}

func FuzzDecodeLeaf(f *testing.F) {
	f.Add(EncodeLeaf([]ID{{1}, {}, {3}}))
	f.Add([]byte("VVL1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := DecodeLeaf(b)
		fuzzErr(t, "leaf", err)
		if err == nil && len(ids)*32 > len(b) {
			t.Fatalf("%d ids from %d bytes", len(ids), len(b))
		}
	})
}

func FuzzDecodeRecoveryPoint(f *testing.F) {
	f.Add("recoverypoints/vm1/rp1", []byte(`{"id":"rp1","vm":"vm1","disks":[{"name":"sda","size_bytes":1,"root":"`+ID{7}.String()+`"}]}`))
	f.Add("recoverypoints/vm1/rp1", []byte(`{"id":"../x","vm":"vm1"}`))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		rp, err := DecodeRecoveryPoint(key, data)
		fuzzErr(t, "recovery point", err)
		if err == nil && RecoveryPointKey(rp.VM, rp.ID) != key {
			t.Fatalf("manifest at %s names %s", key, rp.Ref())
		}
	})
}

func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add([]byte(`{"disk":"sda","size":1048576,"block_size":65536,"leaf_entries":8,"leaves":"` + "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" + `"}`))
	f.Add([]byte(`{"leaves":"AQ=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeCheckpointObject(data)
		fuzzErr(t, "checkpoint", err)
		if err == nil && len(o.LeafIDs())*32 != len(o.Leaves) {
			t.Fatal("leaves lost in decoding")
		}
	})
}
