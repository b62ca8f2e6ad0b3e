package workflows

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/policy"
)

var testScheduled = ScheduledBackupInput{VM: testVM, Host: testHost, Policy: "gold", Consistency: platform.AppConsistent, BackupTimeout: 3 * time.Hour}

// A scheduled run starts the backup as a child under the VM's backup id
// and returns its result.
func TestScheduledBackupStartsTheBackup(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(BackupVM)
	var gotID string
	var gotIn BackupVMInput
	env.OnWorkflow(BackupVM, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in BackupVMInput) (BackupVMResult, error) {
		info := workflow.GetInfo(ctx)
		gotID, gotIn = info.WorkflowExecution.ID, in
		require.Equal(t, 4*time.Hour, info.WorkflowExecutionTimeout, "the job's 3h limit plus the backstop's hour")
		return BackupVMResult{RecoveryPoint: testVM + "/rp1", Type: "full"}, nil
	})
	env.ExecuteWorkflow(ScheduledBackup, testScheduled)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res ScheduledBackupResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, BackupWorkflowID(testVM), gotID)
	require.Equal(t, BackupVMInput{VM: testVM, Host: testHost, Consistency: platform.AppConsistent, Limit: 3 * time.Hour}, gotIn)
	require.False(t, res.Skipped)
	require.Equal(t, "backup-"+testVM, res.Job)
	require.NotNil(t, res.Backup)
	require.Equal(t, testVM+"/rp1", res.Backup.RecoveryPoint)
}

// A failed backup fails the scheduled run, so the schedule shows it.
func TestScheduledBackupFailsWithTheBackup(t *testing.T) {
	env := newEnv(t)
	env.RegisterWorkflow(BackupVM)
	env.OnWorkflow(BackupVM, mock.Anything, mock.Anything).Return(BackupVMResult{}, temporal.NewNonRetryableApplicationError("disk on fire", "Test", nil))
	env.ExecuteWorkflow(ScheduledBackup, testScheduled)
	require.Error(t, env.GetWorkflowError())
	require.Contains(t, env.GetWorkflowError().Error(), "disk on fire")
}

// sideBySide runs an on-demand backup of the VM (a child under its backup
// id, as the CLI's start would) and, while it runs, a scheduled run.
func sideBySide(ctx workflow.Context, in ScheduledBackupInput) (ScheduledBackupResult, error) {
	var res ScheduledBackupResult
	onDemand := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: BackupWorkflowID(in.VM)}),
		BackupVM, BackupVMInput{VM: in.VM, Host: in.Host})
	if err := onDemand.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		return res, err
	}
	if err := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: "scheduled-backup-" + in.VM + "-1"}),
		ScheduledBackup, in).Get(ctx, &res); err != nil {
		return res, err
	}
	// Only now may the on-demand backup finish.
	if err := workflow.SignalExternalWorkflow(ctx, BackupWorkflowID(in.VM), "", "finish", nil).Get(ctx, nil); err != nil {
		return res, err
	}
	return res, onDemand.Get(ctx, nil)
}

// A scheduled run that finds a backup of the VM running completes as
// skipped, says so, and starts no second backup.
func TestScheduledBackupSkippedWhileABackupRuns(t *testing.T) {
	env := newEnv(t)
	// A stand-in BackupVM that runs until told to finish: a mocked child
	// only reports its start once it returns, and a timer would be skipped
	// by the test environment before the scheduled run starts.
	var backups atomic.Int32
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in BackupVMInput) (BackupVMResult, error) {
		backups.Add(1)
		workflow.GetSignalChannel(ctx, "finish").Receive(ctx, nil)
		return BackupVMResult{RecoveryPoint: in.VM + "/rp1"}, nil
	}, workflow.RegisterOptions{Name: "BackupVM"})
	env.RegisterWorkflow(ScheduledBackup)
	env.RegisterWorkflow(sideBySide)
	env.ExecuteWorkflow(sideBySide, testScheduled)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res ScheduledBackupResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.True(t, res.Skipped, "%+v", res)
	require.Nil(t, res.Backup)
	require.True(t, strings.Contains(res.Note, "already running (job backup-"+testVM+")"), res.Note)
	require.Equal(t, int32(1), backups.Load(), "backups started")
}

func TestScheduleFor(t *testing.T) {
	p := policy.Default()
	p.Name, p.Consistency = "gold", policy.ConsistencyFile
	p.Schedule.TimeZone = "Europe/Berlin"
	opts, err := ScheduleFor(p, ScheduledBackupInput{VM: testVM, Host: testHost, BackupTimeout: time.Hour}, "vmvault")
	require.NoError(t, err)
	require.Equal(t, "protect-"+testVM, opts.ID)
	require.Equal(t, "Europe/Berlin", opts.Spec.TimeZoneName)
	require.Len(t, opts.Spec.Calendars, 1)
	cal := opts.Spec.Calendars[0]
	off := p.Offset(testVM)
	at := time.Duration(cal.Hour[0].Start)*time.Hour + time.Duration(cal.Minute[0].Start)*time.Minute + time.Duration(cal.Second[0].Start)*time.Second
	require.Equal(t, (22*time.Hour+off)%(24*time.Hour), at)
	require.Empty(t, cal.DayOfWeek)
	act := opts.Action.(*client.ScheduleWorkflowAction)
	require.Equal(t, "vmvault", act.TaskQueue)
	require.Equal(t, 2*time.Hour, act.WorkflowExecutionTimeout)
	in := act.Args[0].(ScheduledBackupInput)
	require.Equal(t, "gold", in.Policy)
	require.Equal(t, platform.FileConsistent, in.Consistency)
	require.Contains(t, act.StaticSummary, "scheduled backup of "+testVM)

	p.Schedule.Times = nil
	_, err = ScheduleFor(p, ScheduledBackupInput{VM: testVM, Host: testHost}, "vmvault")
	require.ErrorContains(t, err, "schedule.times")
}
