package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/workflows"
)

// Protects run at the same moment cannot pass the protected-VM limit
// together: each counts again after writing its record and steps back
// when that is one too many; those refused have no record and no schedule.
func TestProtectLimitUnderRace(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil) // protect runs as a workflow
	const limit, tries = 3, 8
	results := make([]result, tries)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.cliEnv([]string{fmt.Sprintf("VMVAULT_MAX_PROTECTED_VMS=%d", limit)}, "protect", fmt.Sprintf("vm%d", i))
		}()
	}
	wg.Wait()
	protected := map[string]bool{}
	for i, r := range results {
		switch {
		case r.code == 0:
			protected[fmt.Sprintf("vm%d", i)] = true
		case r.code == 1 && strings.Contains(r.stderr, "limit") && strings.Count(strings.TrimSpace(r.stderr), "\n") == 0:
		default:
			t.Fatalf("protect vm%d: exit %d, stderr %q", i, r.code, r.stderr)
		}
	}
	names, err := e.openVault().ListRecords(context.Background(), policy.RecordProtection)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) > limit || len(names) != len(protected) || len(protected) == 0 {
		t.Fatalf("%d protects at once under a limit of %d: records %v, succeeded %v", tries, limit, names, protected)
	}
	sc := e.tp.Client(t).ScheduleClient()
	for i := 0; i < tries; i++ {
		vm := fmt.Sprintf("vm%d", i)
		_, err := sc.GetHandle(context.Background(), workflows.ProtectScheduleID(vm)).Describe(context.Background())
		if (err == nil) != protected[vm] {
			t.Errorf("vm %s: protected %v, schedule describe error %v", vm, protected[vm], err)
		}
	}
	t.Logf("%d protects at once, limit %d: %d protected", tries, limit, len(protected))
}

// Protects of one VM at once run one after the other (one workflow id per
// VM): all succeed, and the record and the schedule name the same policy.
func TestProtectSameVMAtOnce(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.startWorker(nil)
	policies := []string{"default", "p1", "p2", "p3"}
	for _, p := range policies[1:] {
		e.mustCLI("policy", "create", p, "--time", "0"+p[1:]+":00")
	}
	results := make([]result, len(policies))
	var wg sync.WaitGroup
	for i, p := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.cli("protect", "web", "--policy", p)
		}()
	}
	wg.Wait()
	waited := 0
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("protect web --policy %s: exit %d, stderr %q", policies[i], r.code, r.stderr)
		}
		waited += strings.Count(r.stderr, "waiting for job protection-web (run ")
	}
	var pr policy.Protection
	if err := e.openVault().GetRecord(context.Background(), policy.RecordProtection, "web", &pr); err != nil {
		t.Fatal(err)
	}
	d, err := e.tp.Client(t).ScheduleClient().GetHandle(context.Background(), workflows.ProtectScheduleID("web")).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := d.Schedule.Spec.Calendars[0].Comment; !strings.HasPrefix(c, "policy "+pr.Policy+":") {
		t.Fatalf("record says policy %s, schedule %q", pr.Policy, c)
	}
	t.Logf("4 protects of one vm at once: %d waited for another; policy %s in record and schedule", waited, pr.Policy)
}
