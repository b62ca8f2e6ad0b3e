// Package replicate copies a vault, object by object and byte for byte, to
// a second storage (Run), in the stages the layout table gives (packs,
// index, records, tombstones, recovery points), with delayed deletes on
// the secondary (delete.go); StatusOf and Compare say how far a secondary
// is behind or how two copies differ.
//
// Damage on the primary is never spread to the secondary:
//   - An immutable object (the layout table's Mutable property) is never
//     overwritten on the secondary: it is written only if absent. One the
//     secondary holds at another size is a conflict; with the vault's keys
//     both copies are verified (verify.go) and the report says which is
//     intact. The secondary's copy stays, unless it is proven damaged and
//     the primary's proven intact: then those verified bytes replace it.
//   - With the keys, every object read from the primary is verified before
//     those very bytes are copied (a pack hashes to its name, its header
//     opens, every blob opens to its id; an index object opens and gives
//     its pack's size; other sealed objects open under their key). One
//     that fails is refused and reported, with a refused pack's index
//     object; the pass copies the rest.
//   - A pass skips, unread, an immutable object the secondary holds at the
//     primary's size, so a same-size flip there is invisible to it: Heal
//     (heal.go) reads and verifies every immutable object of the
//     secondary and replaces a damaged one with the primary's copy, only
//     once that copy is verified intact; damage on both sides, or a write
//     the secondary refuses, is reported and nothing is touched.
//   - Only deletions are replicated (delete.go): a pack or index object is
//     deleted from the secondary only if GC's deletion log on the primary
//     names its pack, a manifest only if its point has a tombstone; what
//     merely vanished from the primary is reported as lost there and kept.
//   - The config is read once (config.go): the bytes authenticated by its
//     MAC are the bytes copied, and a secondary config of another vault, or
//     one that does not parse, is never replaced.
//
// replicate imports repo (StatusOf lists the primary's recovery points),
// index (GC's deletion log), format and storage.
package replicate
