package format

import (
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// ErrImmutable is returned (wrapped) when an immutable vault refuses to
// delete a recovery point before its expiry, or to change its immutability.
var ErrImmutable = errors.New("vault is immutable")

// Immutability is an immutable vault's setting.
type Immutability struct {
	Since time.Time `json:"since"`
	// Days every recovery point is kept after it was made, at least.
	Days int `json:"days"`
	// ObjectLock is "" (none), storage.RetentionGovernance or
	// storage.RetentionCompliance.
	ObjectLock string `json:"object_lock,omitempty"`
}

// Check refuses a setting out of bounds.
func (im Immutability) Check() error {
	if im.Days < 1 || im.Days > 36500 {
		return fmt.Errorf("immutability: %d days: want 1 to 36500", im.Days)
	}
	switch im.ObjectLock {
	case "", storage.RetentionGovernance, storage.RetentionCompliance:
	default:
		return fmt.Errorf("immutability: object lock %q: want %s or %s", im.ObjectLock, storage.RetentionGovernance, storage.RetentionCompliance)
	}
	return nil
}

// Period is how long every recovery point is kept.
func (im Immutability) Period() time.Duration { return time.Duration(im.Days) * 24 * time.Hour }

// ExpiresAt is when rp may be deleted from a vault with this setting.
func (im Immutability) ExpiresAt(rp RecoveryPoint) time.Time {
	t := rp.CompletedAt
	if t.IsZero() {
		t = rp.StartedAt
	}
	return t.Add(im.Period()).UTC()
}

// String describes the setting in one line.
func (im Immutability) String() string {
	s := fmt.Sprintf("immutable since %s: recovery points kept %s", im.Since.UTC().Format(time.RFC3339), PluralDays(im.Days))
	if im.ObjectLock != "" {
		s += fmt.Sprintf("; S3 object lock (%s mode) on packs, index objects and manifests", im.ObjectLock)
	}
	return s
}

// PluralDays is n days in words ("1 day", "2 days").
func PluralDays(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}
