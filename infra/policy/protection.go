package policy

import "time"

// Kinds of the vault records (vault.PutRecord) policies live in.
const (
	// RecordPolicies holds one Policy per name (the default policy only when
	// it was changed).
	RecordPolicies = "policies"
	// RecordProtection holds one Protection per protected VM, named after it.
	RecordProtection = "protection"
)

// Protection is a protected VM: the vault's record of which policy backs it
// up on which host. The VM's Temporal Schedule is derived from it and its
// policy, and reconciled from them by 'vmvault protect' and 'policy update'.
type Protection struct {
	VM     string    `json:"vm"`
	Host   string    `json:"host"`
	Policy string    `json:"policy"`
	Since  time.Time `json:"since"`
}
