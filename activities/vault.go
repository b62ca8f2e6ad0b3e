package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// VaultActivities are the activities that work on the vault alone (central
// queue).
type VaultActivities struct {
	Vault *vault.Vault
	// Secondary is the vault's secondary location, if configured.
	Secondary *Secondary
	// Starter starts replication jobs after backups (a client.Client).
	Starter WorkflowStarter
	// Jobs lists running backups for GC's safety rule (a client.Client).
	Jobs JobLister
}

// VaultPin is the vault a job is pinned to: fixed by the job's first vault
// activity, checked by every later one.
type VaultPin struct {
	ID       string `json:"id"`
	Location string `json:"location"`
	// Secondary jobs read the vault's copy at its secondary location.
	Secondary bool `json:"secondary,omitempty"`
}

func pinOf(v *vault.Vault) VaultPin { return VaultPin{ID: v.Config().ID, Location: v.Location()} }

// checkPin refuses, non-retryably, to work on a vault other than the job's:
// a retry would only land on the same misconfigured worker or split the job.
func checkPin(v *vault.Vault, want VaultPin) error {
	if want.ID == "" {
		return badRequest("the job names no vault (vault pin missing)")
	}
	if got := pinOf(v); got.ID != want.ID {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("vault mismatch: the job is pinned to vault %s at %s, but this worker uses vault %s at %s: workers on the same task queues must share one vault",
				want.ID, want.Location, got.ID, got.Location), ErrTypeVaultMismatch, nil)
	}
	return nil
}

// PrepareBackupInput names the VM to back up and its disks.
type PrepareBackupInput struct {
	VM    string   `json:"vm"`
	Disks []string `json:"disks"`
}

// PrepareBackupResult pins the job to this worker's vault and names the
// parent recovery point, if any, and each disk's tree root in it.
type PrepareBackupResult struct {
	Vault        VaultPin            `json:"vault"`
	Parent       string              `json:"parent,omitempty"`
	ParentRoots  map[string]vault.ID `json:"parent_roots,omitempty"`
	ParentTokens map[string]string   `json:"parent_tokens,omitempty"`
	// Notes are for the job's notes (a disk whose tracking is not trusted).
	Notes []string `json:"notes,omitempty"`
}

// PrepareBackup finds the VM's latest recovery point to compare against.
func (a *VaultActivities) PrepareBackup(ctx context.Context, in PrepareBackupInput) (PrepareBackupResult, error) {
	defer alive(ctx)()
	res := PrepareBackupResult{Vault: pinOf(a.Vault)}
	rps, err := a.Vault.ListRecoveryPoints(ctx, in.VM)
	if err != nil && !(errors.Is(err, vault.ErrCorrupt) && rps != nil) {
		return res, classify(err)
	}
	if err != nil {
		// An older parent only costs a longer comparison: blocks dedupe anyway.
		activity.GetLogger(ctx).Warn("skipping unreadable recovery points", "vm", in.VM, "error", err)
	}
	if len(rps) == 0 {
		faultpoint.Hit("backup.prepared")
		return res, nil
	}
	p := rps[len(rps)-1]
	res.Parent = p.Ref()
	res.ParentRoots = map[string]vault.ID{}
	res.ParentTokens = map[string]string{}
	for _, d := range p.Disks {
		res.ParentRoots[d.Name] = d.Root
		switch {
		case p.SnapshotToken == "":
		case d.Stats.AuditMissed > 0:
			// The parent's audit caught the tracking missing changes: the
			// disk is compared by checksums once more before CBT is trusted.
			res.Notes = append(res.Notes, fmt.Sprintf("disk %s: cbt: not trusted since the audit of %s found blocks the bitmap missed; comparing checksums once more", d.Name, p.Ref()))
		default:
			res.ParentTokens[d.Name] = p.SnapshotToken
		}
	}
	faultpoint.Hit("backup.prepared")
	return res, nil
}

// SaveRecoveryPointInput is a finished backup's recovery point.
type SaveRecoveryPointInput struct {
	Vault         VaultPin            `json:"vault"`
	RecoveryPoint vault.RecoveryPoint `json:"recovery_point"`
	VM            platform.VM         `json:"vm"`
}

// SaveRecoveryPoint writes the recovery point manifest: the backup's commit.
func (a *VaultActivities) SaveRecoveryPoint(ctx context.Context, in SaveRecoveryPointInput) (string, error) {
	defer alive(ctx)()
	if err := checkPin(a.Vault, in.Vault); err != nil {
		return "", err
	}
	rp := in.RecoveryPoint
	meta, err := json.Marshal(in.VM)
	if err != nil {
		return "", err
	}
	rp.Metadata = meta
	// Packs were written by host workers: see them before checking roots.
	if _, err := a.Vault.RefreshIndex(ctx); err != nil {
		return "", classify(err)
	}
	if err := a.Vault.SaveRecoveryPoint(ctx, rp); errors.Is(err, vault.ErrMissing) {
		// The host workers wrote and indexed every root before the job got
		// here; a root this worker cannot see yet is S3 listing lag, which a
		// retry outlives.
		return "", temporal.NewApplicationError(err.Error(), ErrTypeIndexLag)
	} else if err != nil {
		return "", classify(err)
	}
	faultpoint.Hit("commit.manifest")
	return rp.Ref(), nil
}

// LoadRecoveryPointInput names a recovery point ("<vm>/<id>" or an id).
type LoadRecoveryPointInput struct {
	Ref string `json:"ref"`
	// FromSecondary reads the vault's copy at its secondary location, and
	// pins the job to it.
	FromSecondary bool `json:"from_secondary,omitempty"`
}

// RecoveryPointInfo is a recovery point with its VM metadata decoded, and
// the vault it was read from (the restore job's pin).
type RecoveryPointInfo struct {
	Vault         VaultPin            `json:"vault"`
	RecoveryPoint vault.RecoveryPoint `json:"recovery_point"`
	VM            platform.VM         `json:"vm"`
}

// LoadRecoveryPoint reads a recovery point for a restore.
func (a *VaultActivities) LoadRecoveryPoint(ctx context.Context, in LoadRecoveryPointInput) (RecoveryPointInfo, error) {
	defer alive(ctx)()
	v, pin := a.Vault, pinOf(a.Vault)
	if in.FromSecondary {
		sv, err := a.Secondary.vault(ctx, a.Vault)
		if err != nil {
			return RecoveryPointInfo{}, err
		}
		v, pin = sv, VaultPin{ID: pin.ID, Location: sv.Location(), Secondary: true}
	}
	rp, vm, err := loadRecoveryPoint(ctx, v, in.Ref)
	if err != nil {
		return RecoveryPointInfo{}, err
	}
	rp.Metadata = nil // carried decoded
	return RecoveryPointInfo{Vault: pin, RecoveryPoint: rp, VM: vm}, nil
}

// loadRecoveryPoint reads a sealed manifest and decodes its VM metadata.
func loadRecoveryPoint(ctx context.Context, v *vault.Vault, ref string) (vault.RecoveryPoint, platform.VM, error) {
	rp, err := v.LoadRecoveryPoint(ctx, ref)
	if err != nil {
		return rp, platform.VM{}, classify(err)
	}
	var vm platform.VM
	if err := json.Unmarshal(rp.Metadata, &vm); err != nil {
		return rp, vm, classify(fmt.Errorf("recovery point %s: vm metadata: %w: %v", rp.Ref(), vault.ErrCorrupt, err))
	}
	return rp, vm, nil
}
