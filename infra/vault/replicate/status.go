package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// VMLag is how far one VM's recovery points are behind on the secondary.
type VMLag struct {
	VM             string `json:"vm"`
	RecoveryPoints int    `json:"recovery_points"`
	// Missing points are on the primary, not yet on the secondary;
	// MissingBytes is what their backups stored (new data, compressed).
	Missing      int   `json:"missing"`
	MissingBytes int64 `json:"missing_bytes"`
	// Oldest is when the oldest missing point was made: the lag in time.
	Oldest time.Time `json:"oldest,omitempty"`
}

// Status compares the vault with its secondary.
type Status struct {
	Secondary string  `json:"secondary"`
	VMs       []VMLag `json:"vms"`
	// MissingObjects (and bytes) are on the primary, not on the secondary.
	MissingObjects int   `json:"missing_objects"`
	MissingBytes   int64 `json:"missing_bytes"`
	// Conflicts are immutable objects both hold at different sizes:
	// replication keeps the secondary's copy and reports them (Report).
	Conflicts int     `json:"conflicts,omitempty"`
	Last      *Report `json:"last,omitempty"`
}

// StatusOf says, for the vault v and per VM, which recovery points and how
// many bytes are not on the secondary dst yet.
func StatusOf(ctx context.Context, v *repo.Repo, dst storage.Backend) (Status, error) {
	st := Status{Secondary: dst.Location()}
	rps, err := v.ListRecoveryPoints(ctx, "")
	if err != nil && rps == nil {
		return st, err
	}
	src, err := listSizes(ctx, v.Storage(), "")
	if err != nil {
		return st, err
	}
	have, err := listSizes(ctx, dst, "")
	if err != nil {
		return st, fmt.Errorf("secondary %s: %w", dst.Location(), err)
	}
	for key, size := range src {
		if !replicated(key) {
			continue
		}
		switch n, ok := have[key]; {
		case !ok:
			st.MissingObjects++
			st.MissingBytes += size
		case n != size && !mutable(key):
			st.Conflicts++
		}
	}
	byVM := map[string]*VMLag{}
	for _, rp := range rps {
		l := byVM[rp.VM]
		if l == nil {
			l = &VMLag{VM: rp.VM}
			byVM[rp.VM] = l
		}
		l.RecoveryPoints++
		if _, ok := have[format.RecoveryPointKey(rp.VM, rp.ID)]; ok {
			continue
		}
		l.Missing++
		l.MissingBytes += rp.Totals().StoredBytes
		if l.Oldest.IsZero() || rp.CompletedAt.Before(l.Oldest) {
			l.Oldest = rp.CompletedAt
		}
	}
	for _, l := range byVM {
		st.VMs = append(st.VMs, *l)
	}
	sort.Slice(st.VMs, func(i, j int) bool { return st.VMs[i].VM < st.VMs[j].VM })
	if data, err := dst.Get(ctx, format.ReplicationLast); err == nil {
		var last Report
		if json.Unmarshal(data, &last) == nil {
			st.Last = &last
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return st, fmt.Errorf("secondary %s: %w", dst.Location(), err)
	}
	return st, nil
}

// Comparison is how two copies of a vault differ, object by object.
type Comparison struct {
	Primary   string `json:"primary"`
	Secondary string `json:"secondary"`
	Objects   int    `json:"objects"`
	// OnlyPrimary: not replicated yet; OnlySecondary: deleted on the
	// primary (and pending on the secondary), or written there by someone
	// else; Differ: same key, other size (or other bytes, for the config
	// and records).
	OnlyPrimary   []string `json:"only_primary,omitempty"`
	OnlySecondary []string `json:"only_secondary,omitempty"`
	Differ        []string `json:"differ,omitempty"`
}

// Same reports whether both hold the same objects.
func (c Comparison) Same() bool {
	return len(c.OnlyPrimary) == 0 && len(c.OnlySecondary) == 0 && len(c.Differ) == 0
}

// Compare lists the replicated objects of a and b and compares them:
// sizes for content-named objects, bytes for the config and records.
func Compare(ctx context.Context, a, b storage.Backend) (Comparison, error) {
	c := Comparison{Primary: a.Location(), Secondary: b.Location()}
	as, err := listSizes(ctx, a, "")
	if err != nil {
		return c, err
	}
	bs, err := listSizes(ctx, b, "")
	if err != nil {
		return c, fmt.Errorf("secondary %s: %w", b.Location(), err)
	}
	for key, size := range as {
		if !replicated(key) {
			continue
		}
		c.Objects++
		n, ok := bs[key]
		switch {
		case !ok:
			c.OnlyPrimary = append(c.OnlyPrimary, key)
		case n != size:
			c.Differ = append(c.Differ, key)
		case mutable(key):
			x, err1 := a.Get(ctx, key)
			y, err2 := b.Get(ctx, key)
			if err := errors.Join(err1, err2); err != nil {
				return c, err
			}
			if !bytes.Equal(x, y) {
				c.Differ = append(c.Differ, key)
			}
		}
	}
	for key := range bs {
		if _, ok := as[key]; !ok && replicated(key) {
			c.OnlySecondary = append(c.OnlySecondary, key)
		}
	}
	sort.Strings(c.OnlyPrimary)
	sort.Strings(c.OnlySecondary)
	sort.Strings(c.Differ)
	return c, nil
}
