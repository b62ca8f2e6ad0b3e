package activities

import (
	"context"
	"time"

	"github.com/vmvault/vmvault/infra/vault"
)

// GCInput tunes one phase of a garbage collection.
type GCInput struct {
	// Grace is how long a pack must have been a candidate before the sweep
	// deletes it (0: vault.DefaultGCGrace).
	Grace  time.Duration `json:"grace,omitempty"`
	DryRun bool          `json:"dry_run,omitempty"`
	// RepackBelowPercent repacks packs whose live blobs take less than this
	// share of them (0: vault.DefaultRepackBelow); NoRepack turns it off.
	RepackBelowPercent int  `json:"repack_below_percent,omitempty"`
	NoRepack           bool `json:"no_repack,omitempty"`
	// MarkedAt is the mark the sweep follows: only backups started before
	// it count for the safety rule (zero: every running backup).
	MarkedAt time.Time `json:"marked_at,omitempty"`
	// Vault pins the sweep to the vault the mark ran on.
	Vault            VaultPin      `json:"vault,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// GCMarkResult is the mark's report and the vault it ran on.
type GCMarkResult struct {
	vault.GCMarkReport
	Vault VaultPin `json:"vault"`
}

// GCMark is GC's first phase: unreferenced packs become candidates and
// leave dedup. It reads every tree, so it heartbeats while it runs.
func (a *VaultActivities) GCMark(ctx context.Context, in GCInput) (GCMarkResult, error) {
	stop := heartbeatEvery(ctx, 5*time.Second)
	defer stop()
	rep, err := a.Vault.Maint().GCMark(ctx, vault.GCOptions{Grace: in.Grace, DryRun: in.DryRun, RepackBelow: in.repackBelow()})
	return GCMarkResult{GCMarkReport: rep, Vault: pinOf(a.Vault)}, classify(err)
}

// GCSweep is GC's second phase: candidates still unreferenced after the
// grace period are deleted. Retrying it is safe: it recomputes everything.
// It checks the safety rule again first (the workflow checked it before the
// mark): a backup started before the mark with a limit as long as the grace
// period, one that started while the mark ran or that visibility listed
// late, stops the sweep before it deletes anything.
func (a *VaultActivities) GCSweep(ctx context.Context, in GCInput) (vault.GCSweepReport, error) {
	if err := checkPin(a.Vault, in.Vault); err != nil {
		return vault.GCSweepReport{}, err
	}
	if !in.DryRun {
		l, err := a.LongestBackupLimit(ctx, BackupLimitInput{StartedBefore: in.MarkedAt})
		if err != nil {
			return vault.GCSweepReport{}, err
		}
		if err := CheckGCGrace(in.grace(), l); err != nil {
			return vault.GCSweepReport{}, err
		}
	}
	stop := heartbeatEvery(ctx, 5*time.Second)
	defer stop()
	rep, err := a.Vault.Maint().GCSweep(ctx, vault.GCOptions{Grace: in.Grace, DryRun: in.DryRun})
	return rep, classify(err)
}

func (in GCInput) grace() time.Duration {
	if in.Grace <= 0 {
		return vault.DefaultGCGrace
	}
	return in.Grace
}

func (in GCInput) repackBelow() float64 {
	switch {
	case in.NoRepack:
		return 0
	case in.RepackBelowPercent > 0:
		return float64(in.RepackBelowPercent) / 100
	}
	return vault.DefaultRepackBelow
}
