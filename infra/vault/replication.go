package vault

import (
	"context"

	"github.com/vmvault/vmvault/infra/vault/replicate"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// The replication vocabulary under the names callers use (package
// replicate).
type (
	ReplicateOptions  = replicate.Options
	ReplicateProgress = replicate.Progress
	ReplicateReport   = replicate.Report
	ReplicationStatus = replicate.Status
	VMLag             = replicate.VMLag
	Comparison        = replicate.Comparison
)

// Replicate copies what src has and dst lacks, object by object, so that
// dst holds the same vault (see replicate.Run).
func Replicate(ctx context.Context, src, dst storage.Backend, opt ReplicateOptions) (ReplicateReport, error) {
	return replicate.Run(ctx, src, dst, opt)
}

// Compare lists what two copies of a vault hold differently.
func Compare(ctx context.Context, a, b storage.Backend) (Comparison, error) {
	return replicate.Compare(ctx, a, b)
}

// ReplicationStatus says, per VM, which recovery points and how many bytes
// are not on the secondary dst yet.
func (v *Vault) ReplicationStatus(ctx context.Context, dst storage.Backend) (ReplicationStatus, error) {
	return replicate.StatusOf(ctx, v.r, dst)
}

// The heal of a secondary's damaged copies (package replicate).
type (
	HealOptions  = replicate.HealOptions
	HealProgress = replicate.HealProgress
	HealReport   = replicate.HealReport
	Conflict     = replicate.Conflict
)

// HealSecondary verifies every immutable object of the secondary dst and
// replaces each damaged one with src's copy, once that copy is verified
// intact (see replicate.Heal).
func HealSecondary(ctx context.Context, src, dst storage.Backend, opt HealOptions) (HealReport, error) {
	return replicate.Heal(ctx, src, dst, opt)
}
