package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/vault"
)

// CheckVaultInput tunes a vault check.
type CheckVaultInput struct {
	// ReadData re-reads and re-hashes the data blocks too.
	ReadData bool `json:"read_data,omitempty"`
	// ReadDataPercent reads only that share of the packs (1-99; 0: all).
	ReadDataPercent int `json:"read_data_percent,omitempty"`
	// Seed picks the packs of a partial read; vary it to cover the vault.
	Seed uint64 `json:"seed,omitempty"`
	// RotateSeed sets Seed to the day of the run (days since 1970), so a
	// daily scheduled check with N% reads the next N% of the packs each
	// day: the whole vault every 100/N days.
	RotateSeed       bool          `json:"rotate_seed,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Secondary checks the vault's copy at its secondary location.
	Secondary bool `json:"secondary,omitempty"`
}

// maxReportedDamage keeps a check's result well inside Temporal's payload
// limit; the damaged recovery points are always all listed.
const maxReportedDamage = 500

// CheckVault checks every recovery point of the vault, heartbeating its
// progress. On the primary it quarantines each pack in which a block fails
// verification (out of dedup, its sound blobs salvaged); a check of the
// secondary never writes: replication owns what is there.
func (a *VaultActivities) CheckVault(ctx context.Context, in CheckVaultInput) (vault.CheckReport, error) {
	stop := heartbeatEvery(ctx, 5*time.Second)
	defer stop()
	v := a.Vault
	if in.Secondary {
		sv, err := a.Secondary.vault(ctx, a.Vault)
		if err != nil {
			return vault.CheckReport{}, err
		}
		v = sv
	}
	rep, err := v.Maint().Check(ctx, vault.CheckOptions{
		ReadData: in.ReadData, ReadDataPercent: in.ReadDataPercent, Seed: in.Seed, MaxDamage: maxReportedDamage,
		ReadOnly: in.Secondary,
		Progress: func(p vault.CheckProgress) { activity.RecordHeartbeat(ctx, p) },
	})
	rep.Vault = v.Location()
	return rep, classify(err)
}

// RepairVaultInput tunes a vault repair.
type RepairVaultInput struct {
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Secondary heals the vault's copy at its secondary location instead:
	// its damaged copies are replaced with the primary's verified ones
	// (HealSecondary).
	Secondary bool `json:"secondary,omitempty"`
}

// RepairVault re-indexes packs from their verified headers, removes the
// index objects of missing packs and quarantines packs that fail
// verification.
func (a *VaultActivities) RepairVault(ctx context.Context, _ RepairVaultInput) (vault.RepairReport, error) {
	stop := heartbeatEvery(ctx, 5*time.Second)
	defer stop()
	rep, err := a.Vault.Maint().Repair(ctx)
	if err != nil {
		return rep, classify(err)
	}
	// This worker's own index forgets the removed objects' packs now.
	_, err = a.Vault.RefreshIndex(ctx)
	return rep, classify(err)
}

// heartbeatEvery keeps a long activity alive while a call without progress
// of its own runs; call the result to stop. It beats at least three times
// per heartbeat timeout of the activity: a fixed 5 s under a timeout of 5 s
// (VMVAULT_HEARTBEAT_TIMEOUT) let a check or GC time out whenever its own
// progress paused, as it does while the object store answers slowly.
func heartbeatEvery(ctx context.Context, every time.Duration) (stop func()) {
	every = beatEvery(ctx, every)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// beatEvery is every, or a third of ctx's activity's heartbeat timeout if
// that is shorter: a keep-alive must beat well inside the timeout.
func beatEvery(ctx context.Context, every time.Duration) time.Duration {
	if activity.IsActivity(ctx) {
		if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 && hb/3 < every {
			return max(hb/3, 100*time.Millisecond)
		}
	}
	return every
}
