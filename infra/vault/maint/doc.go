// Package maint is a vault's maintenance, reached from the vault as
// v.Maint():
//
//   - garbage collection in two phases with a grace period (gc.go): the
//     mark's scan of every reference and pack (gc_scan.go), repacking of
//     sparse packs (repack.go), and the sweep, which names the packs it
//     deletes in GC's deletion log first (gc_log.go);
//   - Check (check.go), which reads every recovery point's trees, and with
//     ReadData its blocks, and reports what is unrestorable; it writes
//     only to quarantine a pack that fails verification (unless ReadOnly);
//   - Repair (repair.go), which rebuilds index objects from packs' headers
//     and quarantines the packs that fail verification;
//   - quarantine (quarantine.go): the note that keeps a damaged pack out of
//     dedup, and the salvage of its sound blobs into a new pack;
//   - the purge of soft-deleted points past their period (purge.go).
//
// maint imports repo, restore (Check reads blocks in the runs a restore
// does), index and format; nothing in the vault but the facade imports it.
package maint
