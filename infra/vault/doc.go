// Package vault is vmvault's repository format: where recovery points and
// the disk data they reference live, on any storage.Backend. This comment
// is the format's specification; Vault is the facade callers use.
//
// Where each part lives (each package's doc.go says what it owns; imports
// run down this list, never up):
//   - storage: the object store a vault lives on (Backend, Object Lock).
//   - format: the layout table of every object kind and its keys and
//     properties (format/layout.go), ids, keys and sealing, the KDF and config,
//     and the encodings of trees, pack headers, index objects, manifests,
//     tombstones, checkpoints and GC's objects.
//   - index: the disk-backed Index, its loads and refreshes (Store), and
//     the reads of index objects, pack headers and GC's log it is built from.
//   - repo: the repository core: an open vault's storage, config, keys and
//     index, sealed objects, blob and tree reads, the pack writer,
//     recovery points, soft delete, records, immutability.
//   - backup (feed, read and hash, collect, checkpoints) and restore: the
//     disk pipelines.
//   - maint: garbage collection, repacking, Check, Repair, the purge of
//     soft-deleted points (Vault.Maint).
//   - replicate: copying a vault to a secondary, its status, Compare.
//   - vault (this package): Vault, which composes them for callers, and the
//     names of their types callers use.
//
// Concepts:
//   - Block: a fixed-size piece of a disk (BlockSize, a power of two fixed per
//     vault). Its ID is a BLAKE3 hash keyed per vault of its plaintext, so ids
//     dedupe within a vault and leak nothing across vaults. All-zero blocks
//     are never stored: their id is the zero ID.
//   - Blob: a sealed block or tree node: compressed (s2 by default, or zstd,
//     per vault) when a probe shows that pays, then sealed with the blob id
//     as additional data (see Sealing).
//   - Pack: an object under packs/ holding many blobs followed by a sealed
//     header, so a backup is a few large PUTs. Every pack is followed by an
//     index object index/<bucket>/<ms>-<pack> (the writer's clock in Unix
//     ms, 12 hex digits, and its first 6 as a bucket of about 4.7 hours, so
//     names sort by time) listing its blobs in binary; the Index maps a blob
//     id to pack, offset and length.
//
// Index refresh (format version 3): a worker loads every index object once,
// then each refresh lists only the index objects named since the newest it
// has seen less a clock-skew margin (storage.ListAfter), and learns the packs
// GC deleted from GC's deletion log gc/deleted/<seq> instead of listing every
// pack. A full load (every index object, every pack) runs hourly and when a
// lookup misses, to catch an index object named by a clock far behind, or a
// pack lost outside GC.
//   - Tree: a disk's block map is a Merkle tree: leaves of LeafEntries block
//     ids, and a root listing the leaves. Unchanged leaves have the same id
//     and are stored once, so a recovery point of a big disk with little
//     churn writes little metadata.
//   - Recovery point: an immutable sealed manifest under recoverypoints/<vm>/
//     naming the VM's metadata and each disk's tree root. It is written last,
//     after every pack and index it needs is durable, so an interrupted
//     backup leaves at most unreferenced packs.
//
// Soft delete: deleting a recovery point writes a sealed tombstone under
// deleted/<vm>/<id> holding its manifest (field "recovery_point"),
// DeletedAt and PurgeAfter, then removes the manifest; undelete writes the
// manifest back, then removes the tombstone. A point with a tombstone is
// deleted even if an interrupted delete left its manifest: it is neither
// listed nor loaded (loading says when it was deleted and until when
// 'vmvault rp undelete' restores it). Purging, after the soft-delete period
// (14 days by default), removes the tombstone and nothing else. An undelete
// and a purge of one point exclude each other through the point's claim
// (claims/<vm>/<id>, sealed, written with PutIfAbsent, not replicated): the
// one that takes it first wins, and the other skips the point (purge) or
// fails saying it is being purged (undelete); a claim older than an hour is
// one left by a process that died, and is taken over. GC keeps
// everything a recovery point or a soft-deleted point references, so data
// is freed only by the first GC after the purge.
//
// Every read is verified: the seal authenticates, and the decompressed
// plaintext is hashed again and compared with its id.
//
// Sealing (format version 2): every sealed object (blob, pack header, index,
// manifest) is salt(32) || AES-256-GCM ciphertext || tag(16), a fixed
// overhead of 48 bytes. The GCM key is BLAKE3-keyed(encKey, salt) with a
// fresh random salt per object, used once with a zero nonce, so no (key,
// nonce) pair repeats unless two salts do: at 10^12 objects the chance is
// below n^2/2^257 ~ 4e-54, and no per-key message or byte limit is ever
// approached. (Version 1's single key with random 96-bit nonces was bounded
// to 2^32 seals.) On AES-NI hardware this keeps AES-GCM's speed for 1 MiB
// blocks, about twice XChaCha20-Poly1305's (BenchmarkSealOpen).
//
// Keys and config: the 64-byte random master key is encKey || idKey (idKey
// keys the block ids). The object "config", overwritten only by ChangeKey and
// SetImmutable (the layout table says which other kinds are mutable),
// holds the format version, id, creation time, block size, pack size, leaf
// entries, compression, the argon2id parameters (salt, time, memory_kib,
// threads; Open refuses costs above 16 passes, 1 GiB or 64 threads before
// deriving), the master key wrapped by AES-256-GCM under the argon2id key of
// the user's secret (at least 12 bytes), and a MAC: BLAKE3 keyed with a key
// derived from the master key over every other field. A wrong secret fails
// the unwrap (ErrWrongKey); a config edited in storage fails the MAC
// (ErrCorrupt), except edits of the KDF inputs, which look like a wrong
// secret. Init writes the config with PutIfAbsent, so of racing inits one
// wins; ChangeKey rewraps the master key under a new secret and salt and
// overwrites the config, rewriting no data. A vault of another format
// version is refused with ErrFormatVersion.
//
// Damage and repair: the index loads each index object whole or not at
// all, after checking its pack's size (a full load lists packs/, a refresh
// reads the size of each new pack); an index object that does not
// open or decode, or whose pack is missing or of another size, is left out
// and reported (Check's IndexProblems), so dedup stops trusting that pack and the
// next backup stores its blocks again. Repair rebuilds the index object of
// every pack without a valid one from the pack's own header (blobs, sealed
// header of type, id, offset and length per blob, header length as 4 bytes
// little-endian), after verifying the whole pack, and index objects of
// missing packs are deleted (and named in a deletion log marked lost, so
// every worker's next refresh forgets their packs, while replication,
// which follows only what sweeps deleted, keeps the secondary's copies).
// Check reads every recovery point's trees (and with ReadData its blocks)
// and reports what is unrestorable by VM, recovery point, disk and offset.
//
// Quarantine: a pack in which a blob fails verification is quarantined,
// whether Check with ReadData found it (e.g. a bit flipped in place, which
// leaves the index object valid; Check reads the pack whole again first, so
// a range damaged in transit quarantines nothing) or Repair did. The note
// is a sealed object quarantine/<pack id>
// (format.Quarantine: pack, time, reason, the damaged blob ids), written
// once with PutIfAbsent, not replicated (the secondary's copy may be sound)
// and not locked. Every index refresh lists quarantine/ (one listing, empty
// in a sound vault) and keeps those packs out of dedup as it does GC's
// candidates, so no backup, on any worker, references them from its next
// refresh on; lookups prefer another copy, and restores may still read
// their sound blobs. The sound blobs are then copied, verified, into a new
// pack (as a repack copies), and the report names the damaged points
// (Check's Damaged; Repair's DamagedPoints). Check counts a quarantined
// pack's damaged blobs as damage without reading them. A damaged blob has
// no sound copy left: the next backup of a disk that still holds that
// block stores it again, CBT or not (see Reuse), and since ids are content
// hashes that heals every point naming it. GC never repacks a quarantined
// pack and does not count its damaged blobs as copies, so it keeps the
// sound copies and sweeps the quarantined pack, then its note; Repair
// deletes the notes of packs that are gone. CheckOptions.ReadOnly (used
// for the secondary) makes Check write nothing.
//
// Reuse: a backup takes an id without reading its block only from the
// parent's tree under CBT, or from a checkpoint's leaves when it resumes;
// both ask the index first. A CBT-unchanged block whose id dedup does not
// hold (its pack lost and repaired away, quarantined, or a GC candidate) is
// read from the disk again and stored, and a checkpoint one of whose
// leaves names such a block is not resumed from.
//
// CBT audit: before a CBT backup takes blocks from the parent, it reads a
// seeded sample of them (BackupOptions.AuditRate of the blocks outside the
// changed extents that may hold data, at least one, at most 256 MiB; the
// seed is the parent recovery point, its tree and the disk, so a retry
// reads the same blocks and each new parent others) and compares their ids
// with the parent's. One that differs means the platform's tracking missed
// changes: the disk is read in full (checksum, with the parent) instead,
// the disk record's stats say so (audit_missed), and the next backup does
// not pass this point's snapshot token for that disk, so it compares
// checksums too before tracking is trusted again. audited_blocks counts a
// disk's audit either way.
//
// Checkpoints: a disk backup in progress writes the leaves it has made
// durable to a sealed object under checkpoints/<random>, rewritten in place
// as the backup goes, before reporting a Checkpoint naming it (next block,
// object key, stats: constant size, whatever the disk's size). A resumed
// backup trusts it only if it is of the same disk and every leaf it lists
// is indexed. A backup that succeeds deletes its checkpoint objects; those
// of backups that never finished are garbage for GC to remove (nothing else
// is kept under checkpoints/, and no recovery point refers to one).
//
// Garbage collection (maint/gc.go) runs in two phases with a grace period, as
// Proxmox Backup Server does. The mark reads every tree of every recovery
// point, soft-deleted point (the manifest in its tombstone under deleted/)
// and checkpoint object, and writes the packs none of whose referenced
// blobs is needed (no referenced blob, or every one also in a pack that
// stays) to the sealed object gc/candidates with the time each was first
// seen. RefreshIndex reads gc/candidates before it lists packs and keeps
// those packs out of dedup (restores may still read them), so a backup
// whose index is loaded after the mark uploads their blocks again. The
// sweep, Grace (25h) later, reads the references again and deletes each
// candidate first seen at least Grace ago that is still not needed: it
// names them in the next deletion log, deletes each pack, then its index
// object, then rewrites gc/candidates (naming that log, which a refresh
// must have read before it trusts the new candidates) and stores its
// report in gc/last. Safety: a backup job started before a pack became a
// candidate may reference it through its dedup view or its parent, but it
// commits (or dies) within its 24-hour limit, before the sweep, which then
// sees its recovery point and keeps the pack; a job started after never
// references a candidate. Checkpoint objects protect their leaves and
// blocks; one first seen Grace ago belongs to a job that has ended and is
// deleted by the sweep. A tree, manifest or tombstone GC cannot read stops
// it: what it references would be unknown. Packs whose contents cannot be
// read (no valid index object, no readable header) are never collected.
//
// Replication (replicate/) copies the vault's objects as stored to a
// secondary storage, data before what references it, and never spreads
// damage there: an immutable object the secondary holds is never
// overwritten (a copy of another size is a conflict, both sides verified
// with the vault's keys and reported), an object of the primary that fails
// verification is not copied, the config copied is the one whose MAC was
// checked, and only deletions are replicated (packs named by GC's deletion
// log, manifests with a tombstone), never what vanished from the primary.
// A pass skips, unread, what the secondary holds at the right size; the
// heal (HealSecondary, replicate.Heal) reads the whole secondary and
// replaces each copy that fails verification with the primary's copy once
// that one is verified intact, and only then.
//
// Records: small settings that must travel with the vault (policies/<name>,
// protection/<vm>) are sealed JSON objects under <kind>/<name>, bound to
// their key like every sealed object, and overwritten in place (atomic
// Puts). Kinds are lower-case words other than the top-level names of the
// layout table's kinds (format.ReservedKind: config, packs, index,
// recoverypoints, deleted, checkpoints, gc, replication, quarantine);
// names have no slash and do not start with a dot. A missing record is
// ErrNoRecord. GC and Check ignore them: they reference no data.
package vault
