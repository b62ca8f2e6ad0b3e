package storage

import (
	"context"
	"time"
)

// Retention is a write-once lock on an object until a time (S3 Object
// Lock): the storage refuses to delete the object's data before Until.
type Retention struct {
	// Mode is "governance" (users with the bypass permission may still
	// delete) or "compliance" (nobody may, not even the root account).
	Mode  string
	Until time.Time
}

// Retention modes.
const (
	RetentionGovernance = "governance"
	RetentionCompliance = "compliance"
)

// Retainer is implemented by backends that can lock objects (S3 buckets
// with Object Lock enabled). The vault uses it when it is immutable with
// object lock; other backends are refused for that setting.
type Retainer interface {
	// PutRetained is Put with the object locked until r.Until.
	PutRetained(ctx context.Context, key string, data []byte, r Retention) error
	// RetainedUntil is the end of the object's lock (zero when it has none).
	RetainedUntil(ctx context.Context, key string) (time.Time, error)
	// CheckRetention fails unless the container can lock objects (the
	// bucket has Object Lock enabled).
	CheckRetention(ctx context.Context) error
}
