package workflows

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

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
