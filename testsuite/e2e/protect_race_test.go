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
