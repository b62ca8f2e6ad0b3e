package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// Vault holds the activities that work on the vault alone (central queue).
type Vault struct {
	Vault *vault.Vault
}

type PrepareBackupInput struct {
	VM    string   `json:"vm"`
	Disks []string `json:"disks"`
}

// PrepareBackupResult names the parent recovery point, if any, and each
// disk's tree root in it.
type PrepareBackupResult struct {
	Vault        string              `json:"vault"`
	Parent       string              `json:"parent,omitempty"`
	ParentRoots  map[string]vault.ID `json:"parent_roots,omitempty"`
	ParentTokens map[string]string   `json:"parent_tokens,omitempty"`
}

// PrepareBackup finds the VM's latest recovery point to compare against.
func (a *Vault) PrepareBackup(ctx context.Context, in PrepareBackupInput) (PrepareBackupResult, error) {
	res := PrepareBackupResult{Vault: a.Vault.Location()}
	rps, err := a.Vault.ListRecoveryPoints(ctx, in.VM)
	if err != nil && !(errors.Is(err, vault.ErrCorrupt) && rps != nil) {
		return res, classify(err)
	}
	if err != nil {
		// An older parent only costs a longer comparison: blocks dedupe anyway.
		activity.GetLogger(ctx).Warn("skipping unreadable recovery points", "vm", in.VM, "error", err)
	}
	if len(rps) == 0 {
		return res, nil
	}
	p := rps[len(rps)-1]
	res.Parent = p.Ref()
	res.ParentRoots = map[string]vault.ID{}
	for _, d := range p.Disks {
		res.ParentRoots[d.Name] = d.Root
	}
	return res, nil
}

type SaveRecoveryPointInput struct {
	RecoveryPoint vault.RecoveryPoint `json:"recovery_point"`
	VM            platform.VM         `json:"vm"`
}

// SaveRecoveryPoint writes the recovery point manifest: the backup's commit.
func (a *Vault) SaveRecoveryPoint(ctx context.Context, in SaveRecoveryPointInput) (string, error) {
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
	if err := a.Vault.SaveRecoveryPoint(ctx, rp); err != nil {
		return "", classify(err)
	}
	return rp.Ref(), nil
}

type LoadRecoveryPointInput struct {
	Ref string `json:"ref"`
}

// RecoveryPointInfo is a recovery point with its VM metadata decoded.
type RecoveryPointInfo struct {
	RecoveryPoint vault.RecoveryPoint `json:"recovery_point"`
	VM            platform.VM         `json:"vm"`
}

// LoadRecoveryPoint reads a recovery point for a restore.
func (a *Vault) LoadRecoveryPoint(ctx context.Context, in LoadRecoveryPointInput) (RecoveryPointInfo, error) {
	rp, err := a.Vault.LoadRecoveryPoint(ctx, in.Ref)
	if err != nil {
		return RecoveryPointInfo{}, classify(err)
	}
	var vm platform.VM
	if err := json.Unmarshal(rp.Metadata, &vm); err != nil {
		return RecoveryPointInfo{}, classify(fmt.Errorf("recovery point %s: vm metadata: %w: %v", rp.Ref(), vault.ErrCorrupt, err))
	}
	rp.Metadata = nil // carried decoded
	return RecoveryPointInfo{RecoveryPoint: rp, VM: vm}, nil
}
