package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/vault"
)

// CheckVaultInput asks for a check of every recovery point of the vault.
type CheckVaultInput = activities.CheckVaultInput

// CheckVault verifies that every recovery point of the vault can be
// restored (trees complete, every block indexed in a stored pack of the
// right size; with ReadData every block re-read and re-hashed) and returns
// what is damaged, by VM, recovery point, disk and offset. It never writes.
func CheckVault(ctx workflow.Context, in CheckVaultInput) (res vault.CheckReport, err error) {
	prog, err := newProgress(ctx, KindCheck, "")
	if err != nil {
		return res, err
	}
	defer func() { prog.fail(err) }()
	if in.ReadDataPercent < 0 || in.ReadDataPercent > 100 {
		return res, badRequest("vault check: read-data subset %d%%: want 1 to 100", in.ReadDataPercent)
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet(string(KindCheck)))
	if in.RotateSeed {
		// A schedule's runs share one input: the day picks the share read.
		in.Seed = uint64(workflow.Now(ctx).Unix() / 86400)
	}
	prog.Phase = PhaseChecking
	err = workflow.ExecuteActivity(vaultJobOptions(ctx, in.HeartbeatTimeout), vaultAct.CheckVault, in).Get(ctx, &res)
	if err != nil {
		return res, err
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVault.ValueSet(res.Vault))
	summary := fmt.Sprintf("vault check: %d recovery points, all restorable", res.RecoveryPoints)
	if !res.OK {
		summary = fmt.Sprintf("vault check: %d of %d recovery points damaged", len(res.Damaged), res.RecoveryPoints)
	}
	workflow.SetCurrentDetails(ctx, summary)
	prog.note(summary)
	prog.Phase = PhaseDone
	return res, nil
}

// RepairVaultInput asks for a repair of the vault's index, or with
// Secondary for a heal of its copy on the secondary.
type RepairVaultInput = activities.RepairVaultInput

// RepairVaultResult is what a repair did: the primary's (RepairReport) or,
// with Secondary, the secondary's heal.
type RepairVaultResult struct {
	vault.RepairReport
	Secondary *vault.HealReport `json:"secondary,omitempty"`
}

// RepairVault makes the index agree with the packs: packs without a valid
// index object are verified and re-indexed, index objects of missing packs
// are removed, so the next backup uploads what was lost. With Secondary it
// heals the secondary instead: every immutable object there is verified
// and a damaged one replaced with the primary's copy proven intact.
func RepairVault(ctx workflow.Context, in RepairVaultInput) (res RepairVaultResult, err error) {
	prog, err := newProgress(ctx, KindRepair, "")
	if err != nil {
		return res, err
	}
	defer func() { prog.fail(err) }()
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet(string(KindRepair)))
	prog.Phase = PhaseRepairing
	var summary string
	if in.Secondary {
		var h vault.HealReport
		if err := workflow.ExecuteActivity(vaultJobOptions(ctx, in.HeartbeatTimeout), vaultAct.HealSecondary, in).Get(ctx, &h); err != nil {
			return res, err
		}
		res.Secondary = &h
		summary = fmt.Sprintf("vault repair --secondary: %d objects verified, %d damaged, %d replaced with the primary's intact copy, %d kept",
			h.Objects, h.DamagedCount, h.Healed, h.Kept())
	} else {
		if err := workflow.ExecuteActivity(vaultJobOptions(ctx, in.HeartbeatTimeout), vaultAct.RepairVault, in).Get(ctx, &res.RepairReport); err != nil {
			return res, err
		}
		summary = fmt.Sprintf("vault repair: %d packs, %d re-indexed, %d index objects of missing packs removed, %d packs failed verification",
			res.Packs, len(res.Reindexed), len(res.RemovedIndex), len(res.BadPacks))
	}
	workflow.SetCurrentDetails(ctx, summary)
	prog.note(summary)
	prog.Phase = PhaseDone
	return res, nil
}

// vaultJobOptions: a long vault-wide activity on the central queue,
// heartbeating its progress.
func vaultJobOptions(ctx workflow.Context, heartbeat time.Duration) workflow.Context {
	if heartbeat <= 0 {
		heartbeat = 2 * time.Minute
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 5,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}
