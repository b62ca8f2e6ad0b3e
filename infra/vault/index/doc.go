// Package index is the vault's index: which pack holds each blob.
//
// It owns:
//   - Index (index.go, run.go, merge.go): the disk-backed map from blob id
//     to pack, offset and length, as sorted run files with an in-memory
//     fence and memtable, merged in the background, and the packs GC
//     marked or Check and Repair quarantined, which dedup must not offer;
//   - Store (load.go): one process's view of a vault's index, loaded on
//     first use and refreshed incrementally (index objects named since the
//     last refresh, GC's deletion logs) or fully (every index object and
//     pack), with its own mutex and cursor;
//   - the reads the index is built from, which GC and repair share with it
//     (gc.go): index objects (GetPackIndex), the pack listing (ListPacks),
//     a pack's blobs from its index object or its header (PackEntries),
//     GC's candidates and deletion logs, the quarantined packs.
//
// index imports format and storage, nothing above them. Writing index
// objects is the repository's (they go under Object Lock with the packs).
package index
