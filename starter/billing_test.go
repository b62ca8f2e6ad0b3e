package main

import "testing"

func TestAzureInstances(t *testing.T) {
	for _, tc := range []struct {
		n     int64
		count int
		class string
	}{
		{0, 1, instanceSmall},
		{1, 1, instanceSmall},
		{50 * gb, 1, instanceSmall},
		{50*gb + 1, 1, instanceStandard},
		{500 * gb, 1, instanceStandard},
		{500*gb + 1, 2, instanceLarge},
		{1000 * gb, 2, instanceLarge},
		{1000*gb + 1, 3, instanceLarge},
		{4095 * gb, 9, instanceLarge},
	} {
		if c, cl := azureInstances(tc.n); c != tc.count || cl != tc.class {
			t.Errorf("azureInstances(%d GB + %d) = %d %q, want %d %q", tc.n/gb, tc.n%gb, c, cl, tc.count, tc.class)
		}
	}
}

func TestBillingOf(t *testing.T) {
	live := vmStats{VM: "a", RecoveryPoints: 2, ProtectedBytes: 60 * gb, StoredBytes: 30 * gb}
	for _, tc := range []struct {
		name        string
		s           vmStats
		protected   bool
		softDeleted int
		billable    bool
	}{
		{"protected with points", live, true, 0, true},
		{"unprotected, data retained", live, false, 0, true},
		{"protected, only soft-deleted points", vmStats{VM: "a"}, true, 2, true},
		{"unprotected, data deleted (soft-deleted)", vmStats{VM: "a"}, false, 2, false},
		{"protected, never backed up", vmStats{VM: "a"}, true, 0, false},
	} {
		b := billingOf(tc.s, tc.protected, tc.softDeleted)
		if b.Billable != tc.billable {
			t.Errorf("%s: billable %v, want %v", tc.name, b.Billable, tc.billable)
		}
		if !b.Billable && (b.Instances != 0 || b.StorageBasis != 0) {
			t.Errorf("%s: not billable but %+v", tc.name, b)
		}
	}
	if b := billingOf(live, true, 0); b.Instances != 1 || b.InstanceClass != instanceStandard || b.StorageBasis != 30*gb {
		t.Errorf("billing of a 60 GB VM: %+v", b)
	}
}
