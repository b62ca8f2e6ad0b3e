package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
)

// Short vault steps heartbeat: a worker that dies holding one costs the
// job its heartbeat timeout (well under a minute), not the ten minutes of
// its start-to-close timeout. Disk transfers keep their heartbeats.
func TestShortVaultStepsHeartbeat(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	var mu sync.Mutex
	started := map[string]activity.Info{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		started[info.ActivityType.Name] = *info
		mu.Unlock()
	})
	env.ExecuteWorkflow(BackupVM, backupInput())
	require.NoError(t, env.GetWorkflowError())

	for _, name := range []string{"PrepareBackup", "SaveRecoveryPoint"} {
		info, ok := started[name]
		require.True(t, ok, "%s did not run", name)
		require.Greater(t, info.HeartbeatTimeout, time.Duration(0), "%s has no heartbeat timeout", name)
		require.LessOrEqual(t, info.HeartbeatTimeout, 30*time.Second, "%s: heartbeat timeout", name)
	}
	require.Equal(t, 2*time.Minute, started["TransferDisk"].HeartbeatTimeout)
}

// A backup cancelled while CreateSnapshot runs (guest pre-scripts may take
// minutes) deletes what the step may have made, by the id the workflow
// planned for it, after the step has ended.
func TestCancelDuringSnapshotDeletesPlannedSnapshot(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(testVMWith(platform.PowerStopped), nil)
	var deleted []platform.Snapshot
	// A slow pre-script: the step runs until the cancel reaches it.
	env.OnActivity(hostAct.CreateSnapshot, mock.Anything, mock.Anything).After(time.Hour).Return(platform.Snapshot{}, nil)
	env.OnActivity(hostAct.DeleteSnapshot, mock.Anything, mock.Anything).Return(func(_ context.Context, s platform.Snapshot) error {
		deleted = append(deleted, s)
		return nil
	})
	never(env, vaultAct.PrepareBackup)
	var snapInfo activity.Info
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "CreateSnapshot" {
			snapInfo = *info
		}
	})
	env.RegisterDelayedCallback(env.CancelWorkflow, 2*time.Minute)
	env.ExecuteWorkflow(BackupVM, backupInput())

	require.True(t, env.IsWorkflowCompleted())
	require.True(t, temporal.IsCanceledError(env.GetWorkflowError()), "%v", env.GetWorkflowError())
	require.Equal(t, []platform.Snapshot{{ID: "vmvault-" + testRunID, VM: testVM}}, deleted)
	require.Greater(t, snapInfo.HeartbeatTimeout, time.Duration(0), "CreateSnapshot does not heartbeat: it never hears of the cancel")
	assertNotCalled(t, env, "PrepareBackup")
}

// Short host steps have a heartbeat timeout too: a host agent killed while
// holding DescribeVM, EnsureExtension, DeleteSnapshot or CommitChanges
// costs the job about 30s, not their five-minute start-to-close timeout.
func TestShortHostStepsHeartbeatTimeout(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerRunning), activities.PrepareBackupResult{Vault: testPin}, platform.AppConsistent)
	m.transferOK(env)
	env.OnActivity(hostAct.EnsureExtension, mock.Anything, mock.Anything).Return(platform.ExtensionStatus{Installed: true, Healthy: true}, nil)
	env.OnActivity(hostAct.CommitChanges, mock.Anything, mock.Anything).Return(nil)
	var mu sync.Mutex
	started := map[string]activity.Info{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		started[info.ActivityType.Name] = *info
		mu.Unlock()
	})
	env.ExecuteWorkflow(BackupVM, backupInput())
	require.NoError(t, env.GetWorkflowError())

	for _, name := range []string{"DescribeVM", "EnsureExtension", "DeleteSnapshot", "CommitChanges", "ExpireKept"} {
		info, ok := started[name]
		require.True(t, ok, "%s did not run", name)
		require.Greater(t, info.HeartbeatTimeout, time.Duration(0), "%s has no heartbeat timeout", name)
		require.LessOrEqual(t, info.HeartbeatTimeout, 30*time.Second, "%s: heartbeat timeout", name)
	}
}

// Disk transfers run on the host's transfer queue, short host steps on its
// host queue: each has its own slots on the host's worker.
func TestTransfersRunOnTheTransferQueue(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	var mu sync.Mutex
	queues := map[string]string{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		queues[info.ActivityType.Name] = info.TaskQueue
		mu.Unlock()
	})
	env.ExecuteWorkflow(BackupVM, backupInput())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, activities.TransferQueue(testHost), queues["TransferDisk"])
	for _, name := range []string{"DescribeVM", "CreateSnapshot", "DeleteSnapshot"} {
		require.Equal(t, activities.HostQueue(testHost), queues[name], name)
	}
}
