package workflows

import (
	"context"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/vault"
)

// The sweep runs a whole grace period after the mark (a durable timer,
// skipped by the test server), pinned to the mark's vault, and the job
// reports what it freed; while it waits, its progress says so.
func TestCollectGarbageSleepsThroughGrace(t *testing.T) {
	env := newEnv(t)
	noBackupRunning(env)
	var markedAt, sweptAt time.Time
	env.OnActivity(vaultAct.GCMark, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.GCInput) (activities.GCMarkResult, error) {
		markedAt = env.Now()
		require.Equal(t, 25*time.Hour, in.Grace)
		return activities.GCMarkResult{GCMarkReport: vault.GCMarkReport{Packs: 10, Candidates: 3, CandidateBytes: 3 << 20}, Vault: testPin}, nil
	})
	env.OnActivity(vaultAct.GCSweep, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.GCInput) (vault.GCSweepReport, error) {
		sweptAt = env.Now()
		require.Equal(t, testPin, in.Vault)
		return vault.GCSweepReport{DeletedPacks: 3, FreedBytes: 3 << 20}, nil
	})
	var waiting Progress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		require.NoError(t, err)
		require.NoError(t, v.Get(&waiting))
	}, time.Hour)
	env.ExecuteWorkflow(CollectGarbage, GCInput{})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res GCResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 3, res.Sweep.DeletedPacks)
	require.Equal(t, int64(3<<20), res.Sweep.FreedBytes)
	require.GreaterOrEqual(t, sweptAt.Sub(markedAt), 25*time.Hour, "swept before the grace period ended")
	require.Equal(t, PhaseGrace, waiting.Phase)
	require.Equal(t, KindGC, waiting.Kind)
}

// Nothing to collect, or a dry run: no waiting.
func TestCollectGarbageNoCandidatesNoWait(t *testing.T) {
	for _, in := range []GCInput{{Grace: time.Hour}, {Grace: time.Hour, DryRun: true}} {
		env := newEnv(t)
		noBackupRunning(env)
		var start, swept time.Time
		env.OnActivity(vaultAct.GCMark, mock.Anything, mock.Anything).Return(func(_ context.Context, a activities.GCInput) (activities.GCMarkResult, error) {
			start = env.Now()
			require.Equal(t, in.DryRun, a.DryRun)
			n := 0
			if in.DryRun {
				n = 2
			}
			return activities.GCMarkResult{GCMarkReport: vault.GCMarkReport{Candidates: n}, Vault: testPin}, nil
		})
		env.OnActivity(vaultAct.GCSweep, mock.Anything, mock.Anything).Return(func(context.Context, activities.GCInput) (vault.GCSweepReport, error) {
			swept = env.Now()
			return vault.GCSweepReport{}, nil
		})
		env.ExecuteWorkflow(CollectGarbage, in)
		require.NoError(t, env.GetWorkflowError())
		require.Less(t, swept.Sub(start), time.Minute)
	}
}

// noBackupRunning answers GC's look at running backups: none.
func noBackupRunning(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(vaultAct.LongestBackupLimit, mock.Anything, mock.Anything).Return(activities.BackupLimit{}, nil).Maybe()
}

// A grace period not longer than the longest limit of a running backup is
// refused before the mark (and so before any sweep), non-retryably, naming
// both numbers and the setting; the limits are read once, not retried.
func TestCollectGarbageRefusesGraceWithinBackupLimit(t *testing.T) {
	for _, grace := range []time.Duration{time.Hour, 48 * time.Hour} {
		env := newEnv(t)
		env.OnActivity(vaultAct.LongestBackupLimit, mock.Anything, mock.Anything).
			Return(activities.BackupLimit{Limit: 48 * time.Hour, Job: "backup-db1", Running: 3}, nil).Once()
		never(env, vaultAct.GCMark)
		never(env, vaultAct.GCSweep)
		env.ExecuteWorkflow(CollectGarbage, GCInput{Grace: grace})
		require.True(t, env.IsWorkflowCompleted())
		err := env.GetWorkflowError()
		var app *temporal.ApplicationError
		require.ErrorAs(t, err, &app)
		require.Equal(t, activities.ErrTypeGCGraceTooShort, app.Type())
		require.True(t, app.NonRetryable())
		for _, want := range []string{"grace period " + grace.String(), "48h0m0s", "backup-db1", "--grace (VMVAULT_GC_GRACE)"} {
			require.Contains(t, app.Error(), want)
		}
		require.NotContains(t, app.Error(), "\n")
		env.AssertActivityNumberOfCalls(t, "LongestBackupLimit", 1)
		assertNotCalled(t, env, "GCMark", "GCSweep")
	}
}

// Longer than every running backup's limit: the job runs, and the sweep
// learns the mark's time so that it counts only backups started before it.
func TestCollectGarbageGraceBeyondBackupLimit(t *testing.T) {
	env := newEnv(t)
	marked := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	env.OnActivity(vaultAct.LongestBackupLimit, mock.Anything, mock.Anything).
		Return(activities.BackupLimit{Limit: 24 * time.Hour, Job: "backup-db1", Running: 1}, nil).Once()
	env.OnActivity(vaultAct.GCMark, mock.Anything, mock.Anything).Return(activities.GCMarkResult{GCMarkReport: vault.GCMarkReport{MarkedAt: marked, Candidates: 1}, Vault: testPin}, nil)
	var swept activities.GCInput
	env.OnActivity(vaultAct.GCSweep, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.GCInput) (vault.GCSweepReport, error) {
		swept = in
		return vault.GCSweepReport{DeletedPacks: 1}, nil
	})
	env.ExecuteWorkflow(CollectGarbage, GCInput{Grace: 24*time.Hour + time.Second})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, marked, swept.MarkedAt)
	require.Equal(t, 24*time.Hour+time.Second, swept.Grace)
}

// A negative grace period is refused before anything runs.
func TestCollectGarbageRefusesNegativeGrace(t *testing.T) {
	env := newEnv(t)
	never(env, vaultAct.GCMark)
	env.ExecuteWorkflow(CollectGarbage, GCInput{Grace: -time.Second})
	require.Error(t, env.GetWorkflowError())
	require.Contains(t, env.GetWorkflowError().Error(), activities.ErrTypeBadRequest)
	assertNotCalled(t, env, "GCMark")
}

// A scheduled check's runs share one input; RotateSeed makes each day's run
// read the next share of the data.
func TestCheckVaultRotatesSeedByDay(t *testing.T) {
	env := newEnv(t)
	start := time.Date(2026, 3, 4, 2, 30, 0, 0, time.UTC)
	env.SetStartTime(start)
	var got activities.CheckVaultInput
	env.OnActivity(vaultAct.CheckVault, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CheckVaultInput) (vault.CheckReport, error) {
		got = in
		return vault.CheckReport{OK: true}, nil
	})
	in := CheckScheduleFor("q", 2, 30, "UTC", CheckVaultInput{ReadData: true, ReadDataPercent: 10}).Action.(*client.ScheduleWorkflowAction).Args[0].(CheckVaultInput)
	env.ExecuteWorkflow(CheckVault, in)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, uint64(start.Unix()/86400), got.Seed)
	require.Equal(t, 10, got.ReadDataPercent)
}

// GC's safety rule lists running backups by this workflow type.
func TestBackupWorkflowTypeIsBackupVM(t *testing.T) {
	full := runtime.FuncForPC(reflect.ValueOf(BackupVM).Pointer()).Name()
	require.Equal(t, activities.BackupWorkflowType, full[strings.LastIndex(full, ".")+1:])
	require.Equal(t, DefaultJobLimit, activities.DefaultBackupLimit)
}
