// Package backup is the disk backup pipeline (the archiver): a disk is read
// in fixed-size blocks and stored in a vault as a tree of block ids, in
// stages joined by channels:
//
//   - feed (feed.go): walks the blocks in order, skipping holes, zero
//     blocks and, with changed-block tracking, what did not change;
//   - read and hash (readhash.go): the parallel stage, reading, hashing and
//     sealing the blocks the vault lacks, on all cores;
//   - collect (collect.go): builds the tree in order and hands blobs to the
//     repository's pack writer;
//   - checkpoints (checkpoint.go): what an interrupted backup resumes from;
//   - the CBT audit (audit.go): before it trusts changed-block tracking, a
//     CBT backup re-reads a seeded sample of the blocks it would take from
//     the parent, and reads the disk in full if any differs.
//
// backup imports repo, index and format; nothing in the vault below it
// imports it.
package backup
