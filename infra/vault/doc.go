// Package vault is vmvault's repository format: where recovery points and
// the disk data they reference live, on any storage.Backend.
//
// Concepts:
//   - Block: a fixed-size piece of a disk (BlockSize, a power of two fixed per
//     vault). Its ID is a BLAKE3 hash keyed per vault of its plaintext, so ids
//     dedupe within a vault and leak nothing across vaults. All-zero blocks
//     are never stored: their id is the zero ID.
//   - Blob: a sealed block or tree node: compressed (s2 by default, or zstd,
//     per vault) when a probe shows that pays, then
//     AES-256-GCM encrypted with the blob id as additional data.
//   - Pack: an object under packs/ holding many blobs followed by a sealed
//     header, so a backup is a few large PUTs. Every pack is followed by an
//     index object under index/ that lists its blobs; the in-memory Index maps
//     a blob id to pack, offset and length.
//   - Tree: a disk's block map is a Merkle tree: leaves of LeafEntries block
//     ids, and a root listing the leaves. Unchanged leaves have the same id
//     and are stored once, so a recovery point of a big disk with little
//     churn writes little metadata.
//   - Recovery point: an immutable sealed manifest under recoverypoints/<vm>/
//     naming the VM's metadata and each disk's tree root. It is written last,
//     after every pack and index it needs is durable, so an interrupted
//     backup leaves at most unreferenced packs.
//
// Every read is verified: the seal authenticates, and the decompressed
// plaintext is hashed again and compared with its id.
package vault
