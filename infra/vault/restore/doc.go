// Package restore writes a disk back from a vault: it walks the disk's tree
// leaf by leaf, groups the blocks into range reads of their packs
// (RangeRuns, which Check reads with too), verifies every block and writes
// it at its offset; zero blocks are skipped.
//
// restore imports repo, index and format.
package restore
