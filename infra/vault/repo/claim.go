package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Claims make an undelete and a purge of the same soft-deleted point
// exclusive. Without one, a purge that listed a tombstone could remove the
// manifest an undelete had just written back (taking it for the leftover of
// an interrupted delete): the undelete reported a restored point that was
// gone, and GC then freed its data. Each takes the point's claim
// (claims/<vm>/<id>, written with PutIfAbsent, so one of two racing writers
// wins) before it touches the point, and rereads the tombstone under it.
// Two of the same kind share a claim: each is idempotent. A claim left by a
// process that died is stale after ClaimStale and taken over.

// ClaimStale is the age after which a claim is taken to be left by a
// process that died: an undelete or a purge of one point takes seconds.
const ClaimStale = time.Hour

// ClaimPoint takes the claim on vm's point id for op at now. It returns
// the release to call when done (it removes the claim if it is still this
// one's), or, when the other kind of operation holds the claim, that claim.
func (v *Repo) ClaimPoint(ctx context.Context, vm, id string, op format.ClaimOp, now time.Time) (release func(), held *format.Claim, err error) {
	key := format.ClaimKey(vm, id)
	var nonce [12]byte
	rand.Read(nonce[:])
	mine := format.Claim{Op: op, Nonce: hex.EncodeToString(nonce[:]), At: now.UTC()}
	sealed, err := format.SealJSON(v.keys, key, mine)
	if err != nil {
		return nil, nil, err
	}
	for range 3 {
		err := v.be.PutIfAbsent(ctx, key, sealed)
		if err == nil {
			return func() { v.releaseClaim(key, mine.Nonce) }, nil, nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return nil, nil, fmt.Errorf("claim %s/%s for %s: %w", vm, id, op, err)
		}
		var other format.Claim
		switch err := v.GetSealed(ctx, key, &other); {
		case errors.Is(err, storage.ErrNotFound):
			continue // released meanwhile
		case errors.Is(err, format.ErrCorrupt):
			// Unreadable: no operation can tell it is its own; take it over.
		case err != nil:
			return nil, nil, fmt.Errorf("claim %s/%s for %s: %w", vm, id, op, err)
		case other.Op == op:
			return func() {}, nil, nil // shared; its owner releases it
		case now.Sub(other.At) < ClaimStale:
			return nil, &other, nil
		}
		if err := v.DeleteKey(ctx, key); err != nil {
			return nil, nil, fmt.Errorf("claim %s/%s for %s: take over a stale claim: %w", vm, id, op, err)
		}
	}
	return nil, nil, fmt.Errorf("claim %s/%s for %s: the claim keeps changing hands", vm, id, op)
}

// releaseClaim removes the claim at key if it is still the one with nonce.
// It runs after the operation ended, on its own context: a claim left
// behind only delays the other kind of operation until it is stale.
func (v *Repo) releaseClaim(key, nonce string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var c format.Claim
	if err := v.GetSealed(ctx, key, &c); err != nil || c.Nonce != nonce {
		return
	}
	_ = v.be.Delete(ctx, key)
}
