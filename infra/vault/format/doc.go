// Package format is the vault's on-storage format, everything about an
// object that does not need the storage to answer:
//
//   - the layout table (layout.go): every kind of object a vault stores
//     (config, packs, index objects, recovery points, tombstones,
//     checkpoints, GC state, GC's deletion logs, replication state,
//     quarantine notes, records), how its keys are built and parsed, and its properties:
//     mutable or not, sealed or not, replicated and in which stage, locked
//     under Object Lock, who may delete it. Record kinds that collide with
//     one of the table's kinds are refused here;
//   - blob ids (id.go) and the keys: subkey derivation, sealing, blob
//     compression and hashing (crypto.go), the argon2id key derivation and
//     secret rules (passwd.go), the config and its wrapped master key and
//     MAC (config.go), sealed JSON objects (sealed.go);
//   - the encodings of tree nodes (tree.go), pack headers (pack.go), index
//     objects and what a load reports about them (indexobj.go), manifests
//     and tombstones (manifest.go), checkpoint objects (checkpoint.go), GC's
//     candidates and deletion logs (gc.go), quarantine notes
//     (quarantine.go), the immutability setting;
//   - the vault's sentinel errors (errors.go).
//
// The vault's package doc is the specification of the format; this package
// is where its parts are written down in code. format imports no other
// vault package except storage (for the Object Lock modes): everything
// else in the vault builds on it.
package format
