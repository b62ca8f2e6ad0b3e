package main

import (
	"context"
	"sort"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
)

// Azure Backup's billing basis for VMs, applied to a vault's VMs.

// gb is Azure's billing GB, 2^30 bytes.
const gb = int64(1) << 30

// Instance classes of Azure's protected-instance price.
const (
	instanceSmall    = "up to 50 GB"  // billed at half the price of one instance
	instanceStandard = "up to 500 GB" // one instance
	instanceLarge    = "per 500 GB"   // one instance per started 500 GB
)

// azureInstances is the count of protected instances Azure bills for a VM
// of protected-instance size n bytes: 1 up to 50 GB (class "up to 50 GB",
// at half price), 1 above 50 GB up to 500 GB, and above 500 GB one per
// started 500 GB (501 GB: 2, 1000 GB: 2, 1001 GB: 3). A VM with no data
// still counts as one small instance while it is billable.
func azureInstances(n int64) (count int, class string) {
	switch {
	case n <= 50*gb:
		return 1, instanceSmall
	case n <= 500*gb:
		return 1, instanceStandard
	default:
		return int((n + 500*gb - 1) / (500 * gb)), instanceLarge
	}
}

// billing is a VM's billing basis.
type billing struct {
	// Protected is whether the VM is protected by a policy now.
	Protected bool `json:"protected"`
	// Billable: from the VM's first successful backup until its protection
	// is stopped and all its backup data deleted. An unprotected VM with
	// recovery points left stays billable at its last backup's size;
	// soft-deleted points are not billed (as in Azure).
	Billable       bool   `json:"billable"`
	Instances      int    `json:"instances"`
	InstanceClass  string `json:"instance_class,omitempty"`
	StorageBasis   int64  `json:"storage_basis_bytes"`
	SoftDeletedRPs int    `json:"soft_deleted_recovery_points,omitempty"`
}

// billingOf is the billing basis of a VM with stats s (of its live
// recovery points), protection state and soft-deleted point count. The
// storage basis is what the VM's live recovery points added to the vault,
// after dedup and compression (their stored bytes): blocks shared with a
// deleted point are not counted, so it can run below the real usage.
func billingOf(s vmStats, protected bool, softDeleted int) billing {
	b := billing{Protected: protected, SoftDeletedRPs: softDeleted}
	b.Billable = s.RecoveryPoints > 0 || (protected && softDeleted > 0)
	if b.Billable {
		b.Instances, b.InstanceClass = azureInstances(s.ProtectedBytes)
		b.StorageBasis = s.StoredBytes
	}
	return b
}

// softDeletedByVM counts soft-deleted points per VM.
func softDeletedByVM(dps []vault.DeletedPoint) map[string]int {
	m := map[string]int{}
	for _, dp := range dps {
		m[dp.VM]++
	}
	return m
}

// withBilling fills in each VM's billing basis, adding VMs that have no
// live recovery point but are protected or have soft-deleted ones.
func (a *app) withBilling(ctx context.Context, v *vault.Vault, list []vmStats) ([]vmStats, error) {
	protected, err := v.ListRecords(ctx, policy.RecordProtection)
	if err != nil {
		return nil, err
	}
	dps, err := v.ListDeleted(ctx, "")
	if err = a.warnCorrupt(err); err != nil {
		return nil, err
	}
	soft := softDeletedByVM(dps)
	isProtected := map[string]bool{}
	for _, vm := range protected {
		isProtected[vm] = true
	}
	seen := map[string]bool{}
	for _, s := range list {
		seen[s.VM] = true
	}
	for _, vm := range protected {
		if !seen[vm] {
			seen[vm] = true
			list = append(list, vmStats{VM: vm})
		}
	}
	for _, dp := range dps {
		if !seen[dp.VM] {
			seen[dp.VM] = true
			list = append(list, vmStats{VM: dp.VM})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].VM < list[j].VM })
	for i := range list {
		list[i].Billing = billingOf(list[i], isProtected[list[i].VM], soft[list[i].VM])
	}
	return list, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
