package billing

import (
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault"
)

func TestAzureInstances(t *testing.T) {
	for _, tc := range []struct {
		n     int64
		count int
		class string
	}{
		{0, 1, InstanceSmall},
		{1, 1, InstanceSmall},
		{50 * GB, 1, InstanceSmall},
		{50*GB + 1, 1, InstanceStandard},
		{500 * GB, 1, InstanceStandard},
		{500*GB + 1, 2, InstanceLarge},
		{1000 * GB, 2, InstanceLarge},
		{1000*GB + 1, 3, InstanceLarge},
		{4095 * GB, 9, InstanceLarge},
	} {
		if c, cl := Instances(tc.n); c != tc.count || cl != tc.class {
			t.Errorf("Instances(%d GB + %d) = %d %q, want %d %q", tc.n/GB, tc.n%GB, c, cl, tc.count, tc.class)
		}
	}
}

func TestBillingOf(t *testing.T) {
	live := VMStats{VM: "a", RecoveryPoints: 2, ProtectedBytes: 60 * GB, StoredBytes: 30 * GB}
	for _, tc := range []struct {
		name        string
		s           VMStats
		protected   bool
		softDeleted int
		billable    bool
	}{
		{"protected with points", live, true, 0, true},
		{"unprotected, data retained", live, false, 0, true},
		{"protected, only soft-deleted points", VMStats{VM: "a"}, true, 2, true},
		{"unprotected, data deleted (soft-deleted)", VMStats{VM: "a"}, false, 2, false},
		{"protected, never backed up", VMStats{VM: "a"}, true, 0, false},
	} {
		b := Of(tc.s, tc.protected, tc.softDeleted)
		if b.Billable != tc.billable {
			t.Errorf("%s: billable %v, want %v", tc.name, b.Billable, tc.billable)
		}
		if !b.Billable && (b.Instances != 0 || b.StorageBasis != 0) {
			t.Errorf("%s: not billable but %+v", tc.name, b)
		}
	}
	if b := Of(live, true, 0); b.Instances != 1 || b.InstanceClass != InstanceStandard || b.StorageBasis != 30*GB {
		t.Errorf("billing of a 60 GB VM: %+v", b)
	}
}

func TestWith(t *testing.T) {
	list := []VMStats{
		{VM: "web", RecoveryPoints: 3, ProtectedBytes: 600 * GB, StoredBytes: 200 * GB},
		{VM: "db", RecoveryPoints: 1, ProtectedBytes: 10 * GB, StoredBytes: 4 * GB},
	}
	dps := []vault.DeletedPoint{
		{RecoveryPoint: vault.RecoveryPoint{VM: "old", ID: "1"}},
		{RecoveryPoint: vault.RecoveryPoint{VM: "old", ID: "2"}},
		{RecoveryPoint: vault.RecoveryPoint{VM: "db", ID: "0"}},
	}
	got := With(list, []string{"web", "new"}, dps)
	var names []string
	for _, s := range got {
		names = append(names, s.VM)
	}
	if strings.Join(names, " ") != "db new old web" {
		t.Fatalf("VMs %v, want db new old web", names)
	}
	want := map[string]Basis{
		"db":  {Billable: true, Instances: 1, InstanceClass: InstanceSmall, StorageBasis: 4 * GB, SoftDeletedRPs: 1},
		"new": {Protected: true},
		"old": {SoftDeletedRPs: 2},
		"web": {Protected: true, Billable: true, Instances: 2, InstanceClass: InstanceLarge, StorageBasis: 200 * GB},
	}
	for _, s := range got {
		if s.Billing != want[s.VM] {
			t.Errorf("%s: %+v, want %+v", s.VM, s.Billing, want[s.VM])
		}
	}
	if n, b := Total(got); n != 3 || b != 204*GB {
		t.Errorf("total: %d instances, %d bytes; want 3 and %d", n, b, 204*GB)
	}
}
