// Package storage is the object store under a vault: a flat namespace of
// objects addressed by slash-separated keys. Backends (a local
// directory, any S3 API) implement Backend; the vault never sees which.
package storage

import (
	"context"
	"errors"
)

// ErrNotFound is returned (wrapped) when a key does not exist. Backends
// translate their provider's error into it so callers can use errors.Is.
var ErrNotFound = errors.New("object not found")

// ErrExists is returned (wrapped) by PutIfAbsent when the key exists.
var ErrExists = errors.New("object already exists")

// ErrRange is returned (wrapped) by GetRange when the range runs past the
// end of the object: it is shorter than its reader was told (a truncated
// pack), which no retry changes. A backend never returns short data, and
// tells this from a read cut short on the way (a retryable error).
var ErrRange = errors.New("range past the end of the object")

// Backend stores whole objects. Put is atomic: a reader sees either no
// object or the complete one, never a torn write, and a successful Put is
// durable. Most objects are written once; the vault overwrites in place
// only its mutable kinds (the config, records, checkpoints, GC state and
// replication state: the layout table in package format says which), and
// relies on Put's atomicity for them.
type Backend interface {
	// Location describes the backend for messages, e.g. "s3://bucket/prefix".
	Location() string
	Put(ctx context.Context, key string, data []byte) error
	// PutIfAbsent is Put that fails with ErrExists, atomically, if the key
	// exists: of two concurrent writers exactly one wins.
	PutIfAbsent(ctx context.Context, key string, data []byte) error
	// Get returns the whole object.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetRange returns length bytes starting at offset; a range past the
	// object's end fails with ErrRange.
	GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error)
	// Stat returns the object's size.
	Stat(ctx context.Context, key string) (int64, error)
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in no
	// particular order.
	List(ctx context.Context, prefix string, fn func(key string, size int64) error) error
	// ListAfter is List restricted to keys that sort after after (byte
	// order), in no particular order. On S3 it costs what it returns, not
	// what is stored (ListObjectsV2's StartAfter); the vault names objects
	// it lists often by time so that a refresh lists only what is new.
	ListAfter(ctx context.Context, prefix, after string, fn func(key string, size int64) error) error
}
