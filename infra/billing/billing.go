package billing

import (
	"sort"

	"github.com/vmvault/vmvault/infra/vault"
)

// GB is Azure's billing GB, 2^30 bytes.
const GB = int64(1) << 30

// Instance classes of Azure's protected-instance price.
const (
	InstanceSmall    = "up to 50 GB"  // billed at half the price of one instance
	InstanceStandard = "up to 500 GB" // one instance
	InstanceLarge    = "per 500 GB"   // one instance per started 500 GB
)

// Instances is the count of protected instances Azure bills for a VM of
// protected-instance size n bytes: 1 up to 50 GB (class "up to 50 GB", at
// half price), 1 above 50 GB up to 500 GB, and above 500 GB one per started
// 500 GB (501 GB: 2, 1000 GB: 2, 1001 GB: 3). A VM with no data still
// counts as one small instance while it is billable.
func Instances(n int64) (count int, class string) {
	switch {
	case n <= 50*GB:
		return 1, InstanceSmall
	case n <= 500*GB:
		return 1, InstanceStandard
	default:
		return int((n + 500*GB - 1) / (500 * GB)), InstanceLarge
	}
}

// Basis is a VM's billing basis.
type Basis struct {
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

// VMStats is one VM's line of vault stats: its live recovery points, what
// they hold and stored, and its billing basis.
type VMStats struct {
	VM             string `json:"vm"`
	RecoveryPoints int    `json:"recovery_points"`
	Latest         string `json:"latest"`
	// ProtectedBytes is the protected-instance size: the data on the VM's
	// disks (temp disk excluded) in its latest recovery point.
	ProtectedBytes int64 `json:"protected_bytes"`
	NewBytes       int64 `json:"new_bytes"`
	StoredBytes    int64 `json:"stored_bytes"`
	// Billing is the VM's billing basis as Azure defines it.
	Billing Basis `json:"billing"`
}

// ByVM sums recovery points (oldest first) per VM, sorted by VM name.
func ByVM(rps []vault.RecoveryPoint) []VMStats {
	byVM := map[string]*VMStats{}
	var names []string
	for _, rp := range rps {
		s := byVM[rp.VM]
		if s == nil {
			s = &VMStats{VM: rp.VM}
			byVM[rp.VM] = s
			names = append(names, rp.VM)
		}
		t := rp.Totals()
		s.RecoveryPoints++
		s.Latest = rp.ID
		s.ProtectedBytes = t.DataBytes
		s.NewBytes += t.NewBytes
		s.StoredBytes += t.StoredBytes
	}
	sort.Strings(names)
	list := make([]VMStats, 0, len(names))
	for _, n := range names {
		list = append(list, *byVM[n])
	}
	return list
}

// Of is the billing basis of a VM with stats s (of its live recovery
// points), protection state and soft-deleted point count. The storage basis
// is what the VM's live recovery points added to the vault, after dedup and
// compression (their stored bytes): blocks shared with a deleted point are
// not counted, so it can run below the real usage.
func Of(s VMStats, protected bool, softDeleted int) Basis {
	b := Basis{Protected: protected, SoftDeletedRPs: softDeleted}
	b.Billable = s.RecoveryPoints > 0 || (protected && softDeleted > 0)
	if b.Billable {
		b.Instances, b.InstanceClass = Instances(s.ProtectedBytes)
		b.StorageBasis = s.StoredBytes
	}
	return b
}

// SoftDeletedByVM counts soft-deleted points per VM.
func SoftDeletedByVM(dps []vault.DeletedPoint) map[string]int {
	m := map[string]int{}
	for _, dp := range dps {
		m[dp.VM]++
	}
	return m
}

// With fills in each VM's billing basis, given the VMs protected now and
// the soft-deleted points, adding VMs that have no live recovery point but
// are protected or have soft-deleted ones. The list comes back sorted by VM.
func With(list []VMStats, protected []string, dps []vault.DeletedPoint) []VMStats {
	soft := SoftDeletedByVM(dps)
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
			list = append(list, VMStats{VM: vm})
		}
	}
	for _, dp := range dps {
		if !seen[dp.VM] {
			seen[dp.VM] = true
			list = append(list, VMStats{VM: dp.VM})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].VM < list[j].VM })
	for i := range list {
		list[i].Billing = Of(list[i], isProtected[list[i].VM], soft[list[i].VM])
	}
	return list
}

// Total sums the billable instances and storage basis of a list.
func Total(list []VMStats) (instances int, basis int64) {
	for _, s := range list {
		if s.Billing.Billable {
			instances += s.Billing.Instances
			basis += s.Billing.StorageBasis
		}
	}
	return instances, basis
}
