package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// A request that arrives while a pass runs gets a pass of its own: the
// first pass may have listed before the new recovery point was saved.
func TestReplicateSignalDuringPassRunsAnother(t *testing.T) {
	env := newEnv(t)
	passes := 0
	env.OnActivity(vaultAct.ReplicateVault, mock.Anything, mock.Anything).Return(func(context.Context, activities.ReplicateInput) (activities.ReplicateResult, error) {
		passes++
		return activities.ReplicateResult{Vault: testPin, ReplicateReport: vault.ReplicateReport{Target: "s3://b/v", Copied: 3, CopiedBytes: 300, RecoveryPoints: passes}}, nil
	}).After(time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalReplicate, "web1/rp2") }, 30*time.Second)
	env.ExecuteWorkflow(ReplicateVault, ReplicateVaultInput{})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res ReplicateVaultResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 2, res.Passes)
	require.Equal(t, 6, res.Copied)
	require.Equal(t, int64(600), res.CopiedBytes)
}

// BackupVM asks for a replication once its recovery point is saved; a
// failure to start one is a note, not a failed backup.
func TestBackupStartsReplication(t *testing.T) {
	env := newEnv(t)
	vm := testVMWith(platform.PowerStopped)
	m := mockBackup(env, vm, activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	var got activities.StartReplicationInput
	env.OnActivity(vaultAct.StartReplication, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.StartReplicationInput) (activities.StartReplicationResult, error) {
		got = in
		require.Len(t, m.save.all(), 1, "replication asked for before the recovery point was saved")
		// One call: a task lost by a loaded server comes back within a
		// minute, not after ten.
		info := activity.GetInfo(ctx)
		require.Less(t, info.Deadline.Sub(info.StartedTime), 2*time.Minute, "StartReplication's start-to-close timeout")
		return activities.StartReplicationResult{Started: true, Secondary: "s3://b/v"}, nil
	}).Once()
	env.ExecuteWorkflow(BackupVM, backupInput())
	require.NoError(t, env.GetWorkflowError())
	var res BackupVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, ReplicateWorkflowID(testPin.ID), got.WorkflowID)
	require.Equal(t, SignalReplicate, got.Signal)
	require.Equal(t, res.RecoveryPoint, got.Trigger)
	require.Contains(t, res.Notes, "replication to s3://b/v requested (job replicate-vault-1)")
}
