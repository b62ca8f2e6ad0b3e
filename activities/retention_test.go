package activities

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
)

// TestListRetentionTargets: protected VMs with their policy's rules and
// time zone; the default policy when it was never stored; a protection
// naming a missing policy is refused.
func TestListRetentionTargets(t *testing.T) {
	ctx := context.Background()
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Init(ctx, be, []byte("retention targets"), vault.InitOptions{KDFMemoryKiB: 8192, KDFTime: 1, KDFThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	gold := policy.Default()
	gold.Name, gold.Retention, gold.Schedule.TimeZone = "gold", policy.Retention{Daily: 7, Weekly: 4, Monthly: 12}, "Europe/Berlin"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(v.PutRecord(ctx, policy.RecordPolicies, "gold", gold))
	must(v.PutRecord(ctx, policy.RecordProtection, "web1", policy.Protection{VM: "web1", Host: "h", Policy: "gold", Since: time.Now()}))
	must(v.PutRecord(ctx, policy.RecordProtection, "db1", policy.Protection{VM: "db1", Host: "h", Policy: policy.DefaultName, Since: time.Now()}))
	a := &VaultActivities{Vault: v}
	// Through the test environment: the step heartbeats.
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	list := func(in RetentionTargetsInput) (RetentionTargets, error) {
		var res RetentionTargets
		val, err := env.ExecuteActivity(a.ListRetentionTargets, in)
		if err == nil {
			err = val.Get(&res)
		}
		return res, err
	}
	res, err := list(RetentionTargetsInput{})
	must(err)
	want := []RetentionTarget{
		{VM: "db1", Policy: "default", Retention: policy.Default().Retention, TimeZone: "UTC"},
		{VM: "web1", Policy: "gold", Retention: gold.Retention, TimeZone: "Europe/Berlin"},
	}
	if len(res.Targets) != 2 || res.Targets[0] != want[0] || res.Targets[1] != want[1] || res.Vault.ID != v.Config().ID {
		t.Fatalf("targets: %+v", res)
	}
	must(v.PutRecord(ctx, policy.RecordProtection, "x1", policy.Protection{VM: "x1", Policy: "gone"}))
	res, err = list(RetentionTargetsInput{})
	must(err)
	if len(res.Targets) != 3 || res.Targets[2].VM != "x1" || res.Targets[2].Problem == "" {
		t.Fatalf("a protection naming a missing policy: %+v", res.Targets)
	}
	if _, err := list(RetentionTargetsInput{Targets: []RetentionTarget{{VM: "a", TimeZone: "Mars/Olympus"}}}); err == nil {
		t.Fatal("a bad time zone was accepted")
	}
}
