package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/infra/platform"
)

// ScheduledBackupInput is what a protected VM's schedule runs with: the
// VM, its host, and the policy's settings at the time the schedule was
// last reconciled.
type ScheduledBackupInput struct {
	VM     string `json:"vm"`
	Host   string `json:"host"`
	Policy string `json:"policy"`
	// Consistency is the policy's: app-consistent, file-consistent or
	// crash-consistent.
	Consistency platform.Consistency `json:"consistency,omitempty"`
	// BackupTimeout bounds the backup job (default 24 h).
	BackupTimeout time.Duration `json:"backup_timeout,omitempty"`
	// HeartbeatTimeout of the backup's disk transfers.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// ScheduledBackupResult says what a scheduled run did: started the VM's
// backup (Job, and Backup once it finished) or skipped it (Note says why).
type ScheduledBackupResult struct {
	VM      string          `json:"vm"`
	Policy  string          `json:"policy"`
	Skipped bool            `json:"skipped,omitempty"`
	Note    string          `json:"note,omitempty"`
	Job     string          `json:"job"`
	Run     string          `json:"run,omitempty"`
	Backup  *BackupVMResult `json:"backup,omitempty"`
}

// ScheduledBackup is the action of a protected VM's schedule. Temporal
// gives every scheduled run its own workflow id, so the run does not back
// up by itself: it starts BackupVM as a child under the VM's one backup id
// (BackupWorkflowID), the id on-demand backups use. The server refuses a
// second execution of a running id atomically, so a run that finds a
// backup of the VM running (on demand, or a run still going) completes as
// skipped, with a note, and nothing waits in a queue. The schedule's own
// overlap policy (skip) keeps runs from piling up behind a long backup.
func ScheduledBackup(ctx workflow.Context, in ScheduledBackupInput) (ScheduledBackupResult, error) {
	res := ScheduledBackupResult{VM: in.VM, Policy: in.Policy, Job: BackupWorkflowID(in.VM)}
	if in.VM == "" || in.Host == "" {
		return res, temporal.NewNonRetryableApplicationError("scheduled backup names no vm or host", "BadRequest", nil)
	}
	timeout := in.BackupTimeout
	if timeout <= 0 {
		timeout = 24 * time.Hour
	}
	bin := BackupVMInput{VM: in.VM, Host: in.Host, Consistency: in.Consistency, HeartbeatTimeout: in.HeartbeatTimeout, Limit: timeout}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:               res.Job,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionTimeout: ServerTimeout(timeout),
		// Cancel, not terminate: the backup's cleanup (delete the snapshot)
		// runs when its scheduled run is cancelled or terminated.
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		WaitForCancellation:   true,
		TypedSearchAttributes: temporal.NewSearchAttributes(AttrVM.ValueSet(in.VM), AttrKind.ValueSet(string(KindBackup))),
		StaticSummary:         fmt.Sprintf("backup %s (host %s), scheduled by policy %s", in.VM, in.Host, in.Policy),
	})
	child := workflow.ExecuteChildWorkflow(cctx, BackupVM, bin)
	var exec workflow.Execution
	if err := child.GetChildWorkflowExecution().Get(ctx, &exec); err != nil {
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			res.Skipped = true
			res.Note = fmt.Sprintf("skipped: a backup of vm %s is already running (job %s): one backup per VM at a time", in.VM, res.Job)
			workflow.GetLogger(ctx).Info("scheduled backup skipped", "vm", in.VM, "job", res.Job)
			workflow.SetCurrentDetails(ctx, res.Note)
			return res, nil
		}
		return res, err
	}
	res.Run = exec.RunID
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("started backup job %s (run %s)", res.Job, exec.RunID))
	var b BackupVMResult
	if err := child.Get(ctx, &b); err != nil {
		// A failed backup fails the run, so the schedule and 'vmvault
		// protected' show it.
		return res, err
	}
	res.Backup = &b
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("backup job %s: recovery point %s", res.Job, b.RecoveryPoint))
	return res, nil
}
