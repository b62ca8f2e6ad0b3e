// Package format is the vault's on-storage format below the repository:
// blob ids and the layout table, the one place that names every kind of
// object a vault stores (config, packs, index objects, recovery points,
// tombstones, checkpoints, GC state, GC's deletion logs, replication state,
// records), builds and parses their keys, and states each kind's
// properties (mutable, sealed, replicated and in which stage, locked under
// Object Lock, who may delete it). Record kinds that would collide with one
// of the table's kinds are refused here.
//
// format imports only the standard library: everything else in the vault
// builds on it, so it may call nothing above it.
package format
