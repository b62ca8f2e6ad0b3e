// Package replicate copies a vault, object by object and byte for byte, to
// a second storage (Run), in the stages the layout table gives (packs,
// index, records, tombstones, recovery points), with delayed deletes on
// the secondary (delete.go); StatusOf and Compare say how far a secondary
// is behind or how two copies differ.
//
// replicate imports repo (StatusOf lists the primary's recovery points),
// format and storage.
package replicate
