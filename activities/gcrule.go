package activities

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

// The GC safety rule: a backup that started before GC's mark may reference
// a pack the mark makes a candidate (through its dedup view or its parent);
// it commits or dies within its limit, so the sweep, a grace period after
// the mark, sees its recovery point and keeps the pack, but only if the
// grace period is longer than that backup's limit. The limit that matters
// is the one each running backup was given (backup --timeout, the
// VMVAULT_BACKUP_TIMEOUT a schedule was reconciled with, else the 24-hour
// default), read from the job itself: a limit configured today says nothing
// about a backup started yesterday with another one.

// BackupWorkflowType is the workflow type of backup jobs, on demand and
// scheduled alike (a schedule's run starts one as its child).
const BackupWorkflowType = "BackupVM"

// DefaultBackupLimit is the limit of a backup started without one (the
// classic 24-hour limit; workflows.DefaultJobLimit is this value).
const DefaultBackupLimit = 24 * time.Hour

// JobLister lists workflow executions and reads their histories (a
// client.Client is one).
type JobLister interface {
	ListWorkflow(ctx context.Context, request *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error)
	GetWorkflowHistory(ctx context.Context, workflowID string, runID string, isLongPoll bool, filterType enumspb.HistoryEventFilterType) client.HistoryEventIterator
}

// BackupLimit is the longest limit of the backups running at a time.
type BackupLimit struct {
	// Limit is the longest; 0 when no backup runs.
	Limit time.Duration `json:"limit"`
	// Job is the backup job that has it.
	Job string `json:"job,omitempty"`
	// Running counts the backups that were looked at.
	Running int `json:"running"`
}

// BackupLimitInput says which running backups count.
type BackupLimitInput struct {
	// StartedBefore counts only backups started before it (a GC's mark);
	// zero counts every running backup.
	StartedBefore time.Time `json:"started_before,omitempty"`
}

// LongestBackupLimit is the longest limit any running backup was given.
func (a *VaultActivities) LongestBackupLimit(ctx context.Context, in BackupLimitInput) (BackupLimit, error) {
	if a.Jobs == nil {
		return BackupLimit{}, temporal.NewNonRetryableApplicationError(
			"vault gc: this worker cannot list running backups (no Temporal client), so the grace period cannot be checked", ErrTypeBadRequest, nil)
	}
	return LongestBackupLimit(ctx, a.Jobs, in.StartedBefore)
}

// LongestBackupLimit lists the running backup jobs (those started before
// startedBefore, unless it is zero) and returns the longest limit one of
// them was given: its input's limit, or DefaultBackupLimit without one.
func LongestBackupLimit(ctx context.Context, jobs JobLister, startedBefore time.Time) (BackupLimit, error) {
	var res BackupLimit
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", BackupWorkflowType)
	var token []byte
	for {
		resp, err := jobs.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token, PageSize: 100})
		if err != nil {
			return res, fmt.Errorf("list running backups: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			if !startedBefore.IsZero() && !e.GetStartTime().AsTime().Before(startedBefore) {
				continue
			}
			id := e.GetExecution().GetWorkflowId()
			limit, err := backupLimitOf(ctx, jobs, id, e.GetExecution().GetRunId())
			if err != nil {
				return res, err
			}
			res.Running++
			if limit > res.Limit {
				res.Limit, res.Job = limit, id
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return res, nil
		}
	}
}

// backupLimitOf reads the limit a backup job was given from the input in
// its first history event.
func backupLimitOf(ctx context.Context, jobs JobLister, id, runID string) (time.Duration, error) {
	it := jobs.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return 0, fmt.Errorf("backup job %s (run %s): no history", id, runID)
	}
	ev, err := it.Next()
	if err != nil {
		return 0, fmt.Errorf("backup job %s (run %s): read its start: %w", id, runID, err)
	}
	var in struct {
		Limit time.Duration `json:"limit"`
	}
	if p := ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads(); len(p) > 0 {
		if err := converter.GetDefaultDataConverter().FromPayload(p[0], &in); err != nil {
			return 0, fmt.Errorf("backup job %s (run %s): read its input: %w", id, runID, err)
		}
	}
	if in.Limit <= 0 {
		return DefaultBackupLimit, nil
	}
	return in.Limit, nil
}

// CheckGCGrace is the rule itself: GC may run with grace only when grace is
// longer than the longest backup limit in force. The refusal is
// non-retryable (ErrTypeGCGraceTooShort) and says both numbers and what to
// change.
func CheckGCGrace(grace time.Duration, l BackupLimit) error {
	if grace > l.Limit {
		return nil
	}
	of := ""
	if l.Running > 1 {
		of = fmt.Sprintf(" (the longest of %d running)", l.Running)
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"vault gc refused: grace period %s is not longer than %s, the limit of running backup job %s%s, so the sweep could delete packs it still references: "+
			"set --grace (VMVAULT_GC_GRACE) above %s, or run gc once that backup has ended (backup --timeout and VMVAULT_BACKUP_TIMEOUT set a backup's limit)",
		grace, l.Limit, l.Job, of, l.Limit), ErrTypeGCGraceTooShort, nil)
}
