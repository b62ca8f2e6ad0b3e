// Package repo is the vault's repository core: an open vault's storage,
// config and keys, its index store, and every read and write of its
// objects that the layers above share:
//
//   - Init, Open, ChangeKey, OnStorage; the config and its reload
//     (repo.go), immutability and Object-Lock-aware puts (immutable.go);
//   - sealed objects (PutSealed, GetSealed), blob reads and tree nodes
//     (tree.go), the pack writer (pack.go), the index's use and index
//     object writes (indexuse.go);
//   - recovery points (recoverypoint.go), soft delete and tombstones, and
//     the general helpers ResolveRef, ListKeys, DeleteKey (softdelete.go);
//   - records (records.go).
//
// repo imports format, index and storage; the backup and restore
// pipelines, maintenance and replication build on it, never the reverse.
package repo
