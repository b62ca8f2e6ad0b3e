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
			workflows.RegisterWorkflows(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
