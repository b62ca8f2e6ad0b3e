package vault

import "github.com/vmvault/vmvault/infra/vault/maint"

// Maint is the vault's maintenance: GC, Check, Repair and the purge of
// soft-deleted points (package maint). One entry point keeps the Vault
// small and every maintenance call where a reader looks for it.
func (v *Vault) Maint() *maint.Maintainer { return maint.New(v.r) }

// The maintenance vocabulary under the names callers use.
type (
	GCOptions     = maint.GCOptions
	GCMarkReport  = maint.GCMarkReport
	GCSweepReport = maint.GCSweepReport
	CheckOptions  = maint.CheckOptions
	CheckProgress = maint.CheckProgress
	CheckReport   = maint.CheckReport
	Damage        = maint.Damage
	DamageKind    = maint.DamageKind
	RepairReport  = maint.RepairReport
	RepackReport  = maint.RepackReport
	PackProblem   = maint.PackProblem
	// QuarantineReport is a pack Check or Repair put in quarantine.
	QuarantineReport = maint.QuarantineReport
)

const (
	DamageRoot  = maint.DamageRoot
	DamageLeaf  = maint.DamageLeaf
	DamageBlock = maint.DamageBlock

	DefaultGCGrace     = maint.DefaultGCGrace
	DefaultRepackBelow = maint.DefaultRepackBelow
)
