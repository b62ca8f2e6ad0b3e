// Package replay replays recorded workflow histories (from `make demo`)
// against the current workflow code: a change that would break running
// jobs fails here and must go behind workflow.GetVersion.
package replay

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/vmvault/vmvault/workflows"
)

func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) < 3 {
		t.Fatalf("recorded histories: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(workflows.BackupVM)
			r.RegisterWorkflow(workflows.ScheduledBackup)
			r.RegisterWorkflow(workflows.RestoreVM)
			r.RegisterWorkflow(workflows.Inventory)
			r.RegisterWorkflow(workflows.ApplyRetention)
			r.RegisterWorkflow(workflows.CheckVault)
			r.RegisterWorkflow(workflows.RepairVault)
			r.RegisterWorkflow(workflows.CollectGarbage)
			r.RegisterWorkflow(workflows.ReplicateVault)
			r.RegisterWorkflow(workflows.Protect)
			r.RegisterWorkflow(workflows.Unprotect)
			r.RegisterWorkflow(workflows.UpdatePolicy)
			r.RegisterWorkflow(workflows.SyncSchedule)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
