package replicate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Verification, when the replicator has the vault's keys: an object read
// from the primary is checked before it is copied (the bytes checked are
// the bytes written), and both copies of a conflict are checked to say
// which is intact.

// Verdicts of one copy of an object.
const (
	VerdictIntact     = "intact"
	VerdictUnverified = "not verified (no vault keys)"
	VerdictMissing    = "missing"
)

// verify checks data, stored at key, against the vault's keys: a pack
// hashes to its name, its sealed header opens and lists blobs that tile
// the pack, and every blob opens and hashes to its id; an index object
// opens, names its pack, and gives the size listed for it (packSize, -1
// when unknown); every other sealed object opens under its key. The error
// wraps format.ErrCorrupt.
func verify(k *format.Keys, key string, data []byte, packSize int64) error {
	switch format.KindOf(key) {
	case format.KindPack:
		return verifyPack(k, key, data)
	case format.KindIndex:
		plain, err := k.Open(nil, data, []byte(key))
		if err != nil {
			return err
		}
		pi, err := format.DecodePackIndex(key, plain)
		if err != nil {
			return err
		}
		if packSize >= 0 && pi.Size != packSize {
			return fmt.Errorf("%w: its pack has %d bytes, the index object says %d", format.ErrCorrupt, packSize, pi.Size)
		}
		return nil
	}
	if !format.KindOf(key).Props().Sealed {
		return nil
	}
	_, err := k.Open(nil, data, []byte(key))
	return err
}

func verifyPack(k *format.Keys, key string, data []byte) error {
	want, err := format.ParseID(pathBase(key))
	if err != nil {
		return fmt.Errorf("%w: not a pack name", format.ErrCorrupt)
	}
	if got := k.Hash(data); got != want {
		return fmt.Errorf("%w: content (%d bytes) hashes to %s", format.ErrCorrupt, len(data), got.Short())
	}
	body, sealed, err := format.SplitPack(data)
	if err != nil {
		return err
	}
	entries, err := format.OpenPackHeader(k, sealed, len(body))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := k.OpenBlob(e.ID, body[e.Offset:e.Offset+e.Length]); err != nil {
			return fmt.Errorf("blob %s at %d: %w", e.ID.Short(), e.Offset, err)
		}
	}
	return nil
}

// Conflict is an immutable object that the primary and the secondary hold
// differently. Replication never overwrites the secondary's copy with
// anything but a proven good one: only when the vault's keys show the
// secondary's copy damaged and the primary's intact do the primary's
// verified bytes replace it (Replaced); otherwise the secondary's copy
// stays.
type Conflict struct {
	Key            string `json:"key"`
	PrimaryBytes   int64  `json:"primary_bytes"`
	SecondaryBytes int64  `json:"secondary_bytes"`
	// Primary and Secondary say what each copy is: VerdictIntact,
	// "damaged: <why>", VerdictMissing or VerdictUnverified.
	Primary   string `json:"primary"`
	Secondary string `json:"secondary"`
	Replaced  bool   `json:"replaced,omitempty"`
	// Note says why a damaged secondary copy was kept (Heal).
	Note string `json:"note,omitempty"`
}

func (c Conflict) String() string {
	what := "kept"
	if c.Replaced {
		what = "replaced with the primary's intact copy"
	} else if c.Note != "" {
		what = "kept: " + c.Note
	}
	return fmt.Sprintf("%s: primary %d bytes, %s; secondary %d bytes, %s (%s)", c.Key, c.PrimaryBytes, c.Primary, c.SecondaryBytes, c.Secondary, what)
}

// Refused is an object of the primary that failed verification and was
// not copied.
type Refused struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

func (r Refused) String() string { return r.Key + ": " + r.Reason }

// maxListed bounds the conflicts and refusals a report names (it travels
// in a workflow's history); the counts are complete.
const maxListed = 20

// verdict reads key from be and verifies it; data is what it read.
func verdict(ctx context.Context, k *format.Keys, be storage.Backend, key string, packSize int64) (v string, data []byte, err error) {
	if k == nil {
		return VerdictUnverified, nil, nil
	}
	data, err = be.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return VerdictMissing, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	if err := verify(k, key, data, packSize); err != nil {
		return "damaged: " + err.Error(), data, nil
	}
	return VerdictIntact, data, nil
}

// conflict verifies both copies of key, which the secondary holds at
// another size than the primary. A secondary copy proven damaged is
// replaced with the primary's copy proven intact (the very bytes
// verified): that heals the secondary and cannot spread damage to it.
func (c *copier) conflict(ctx context.Context, key string, srcSize, dstSize int64) error {
	cf := Conflict{Key: key, PrimaryBytes: srcSize, SecondaryBytes: dstSize}
	var err error
	var good []byte
	if cf.Primary, good, err = verdict(ctx, c.opt.Keys, c.src, key, c.packSize(key, c.srcSizes)); err != nil {
		return err
	}
	if cf.Secondary, _, err = verdict(ctx, c.opt.Keys, c.dst, key, c.packSize(key, c.dstSizes)); err != nil {
		return fmt.Errorf("secondary: %w", err)
	}
	if cf.Primary == VerdictIntact && strings.HasPrefix(cf.Secondary, "damaged") {
		if err := c.replace(ctx, key, good); err != nil {
			return err
		}
		cf.Replaced = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.ConflictCount++
	if len(c.rep.Conflicts) < maxListed {
		c.rep.Conflicts = append(c.rep.Conflicts, cf)
	}
	return nil
}

// replace writes data, verified intact, over the secondary's damaged copy
// of the immutable key (locked again when the vault locks its copies).
func (c *copier) replace(ctx context.Context, key string, data []byte) error {
	if c.opt.Retention != nil {
		if r := c.opt.Retention(key); r != nil {
			if l, ok := c.dst.(storage.Retainer); ok {
				if err := l.PutRetained(ctx, key, data, *r); err != nil {
					return fmt.Errorf("secondary: replace damaged %s: %w", key, err)
				}
				return nil
			}
		}
	}
	if err := c.dst.Put(ctx, key, data); err != nil {
		return fmt.Errorf("secondary: replace damaged %s: %w", key, err)
	}
	return nil
}

// packSize is the listed size of the pack of an index object key (-1:
// not an index object, or its pack is not listed).
func (c *copier) packSize(key string, sizes map[string]int64) int64 {
	id, _, ok := format.ParseIndexKey(key)
	if !ok {
		return -1
	}
	if n, ok := sizes[format.PackKey(id)]; ok {
		return n
	}
	return -1
}

// refuse records a primary object that failed verification.
func (c *copier) refuse(key string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.RefusedCount++
	if len(c.rep.Refused) < maxListed {
		c.rep.Refused = append(c.rep.Refused, Refused{Key: key, Reason: err.Error()})
	}
	if format.KindOf(key) == format.KindPack {
		c.vanished[key] = true // its index object is not copied either
	}
}
