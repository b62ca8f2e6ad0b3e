package workflows

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

func hasNote(notes []string, s string) bool {
	return strings.Contains(strings.Join(notes, "\n"), s)
}

// --keep-snapshot: the host's expired kept snapshots are removed first, the
// snapshot's image is kept under the recovery point's id, the recovery
// point records it with the host, and the snapshot is deleted as usual.
func TestBackupKeepSnapshot(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	never(env, hostAct.EnsureExtension)
	env.OnActivity(hostAct.ExpireKept, mock.Anything, mock.Anything).Return(activities.ExpireKeptResult{Removed: []string{"web1/old"}}, nil).Once()
	var keep recorder[activities.KeepSnapshotInput]
	env.OnActivity(hostAct.KeepSnapshot, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.KeepSnapshotInput) (platform.KeptSnapshot, error) {
		keep.add(in)
		return platform.KeptSnapshot{VM: in.Snapshot.VM, ID: in.ID, Sizes: map[string]int64{"os": 1}, Expires: in.Expires}, nil
	}).Once()
	in := backupInput()
	in.KeepSnapshot, in.KeepFor = true, 3*time.Hour

	env.ExecuteWorkflow(BackupVM, in)
	require.NoError(t, env.GetWorkflowError())
	var res BackupVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
	saved := m.save.all()
	require.Len(t, saved, 1)
	rp := saved[0].RecoveryPoint
	require.NotNil(t, rp.Kept)
	require.Equal(t, testHost, rp.Kept.Host)
	require.Equal(t, rp.ID, rp.Kept.ID)
	require.Equal(t, rp.Kept, res.Kept)
	ki := keep.all()
	require.Len(t, ki, 1)
	require.WithinDuration(t, rp.StartedAt.Add(3*time.Hour), ki[0].Expires, time.Minute)
	require.True(t, hasNote(res.Notes, "kept on host hv1"), "%q", res.Notes)
	require.True(t, hasNote(res.Notes, "web1/old expired and was removed"), "%q", res.Notes)
	require.Equal(t, PhaseDone, queryProgress(t, env).Phase)
}

// A platform that cannot keep snapshots: the backup succeeds and says so.
func TestBackupKeepSnapshotNotSupported(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	env.OnActivity(hostAct.KeepSnapshot, mock.Anything, mock.Anything).Return(platform.KeptSnapshot{},
		temporal.NewNonRetryableApplicationError("this platform cannot keep snapshots (only the qemu platform can)", activities.ErrTypeNotSupported, nil)).Once()
	in := backupInput()
	in.KeepSnapshot = true

	env.ExecuteWorkflow(BackupVM, in)
	require.NoError(t, env.GetWorkflowError())
	var res BackupVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Nil(t, res.Kept)
	require.Nil(t, m.save.all()[0].RecoveryPoint.Kept)
	require.True(t, hasNote(res.Notes, "--keep-snapshot: this platform cannot keep snapshots"), "%q", res.Notes)
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
}

// mockKeptRestore: the recovery point has a snapshot kept on host.
func mockKeptRestore(env *testsuite.TestWorkflowEnvironment, host string, expires time.Time) *restoreMocks {
	m := &restoreMocks{}
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: testJobID})
	info := testRecoveryPoint()
	info.RecoveryPoint.Kept = &vault.KeptSnapshot{Host: host, VM: testVM, ID: testRPID, Expires: expires}
	env.OnActivity(vaultAct.LoadRecoveryPoint, mock.Anything, mock.Anything).Return(info, nil).Once()
	env.OnActivity(hostAct.PrepareNewVM, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PrepareNewVMInput) (platform.VM, error) {
		m.prepare.add(in)
		return in.VM, nil
	})
	env.OnActivity(hostAct.CommitRestore, mock.Anything, mock.Anything).Return(activities.CommitRestoreResult{}, nil)
	env.OnActivity(hostAct.AbortRestore, mock.Anything, mock.Anything).Return(nil)
	m.restoreOK(env)
	return m
}

func restoreNew(env *testsuite.TestWorkflowEnvironment, fromVault bool) RestoreVMResult {
	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testVM + "/" + testRPID, Mode: RestoreNewVM, TargetVM: "web1-now", Host: testHost, FromVault: fromVault})
	var res RestoreVMResult
	if env.GetWorkflowError() == nil {
		env.GetWorkflowResult(&res)
	}
	return res
}

// A kept snapshot on this host: the new VM is made from it, nothing is
// read from the vault, and the job says so.
func TestRestoreInstant(t *testing.T) {
	env := newEnv(t)
	mockKeptRestore(env, testHost, time.Now().Add(24*time.Hour))
	var made recorder[activities.NewVMFromKeptInput]
	env.OnActivity(hostAct.NewVMFromKept, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.NewVMFromKeptInput) (platform.VM, error) {
		made.add(in)
		return in.VM, nil
	}).Once()
	res := restoreNew(env, false)
	require.NoError(t, env.GetWorkflowError())
	assertNotCalled(t, env, "RestoreDisk", "PrepareNewVM", "CommitRestore")
	require.NotNil(t, res.Instant)
	require.Equal(t, "web1-now", res.VM)
	require.Len(t, res.Disks, 3)
	in := made.all()
	require.Len(t, in, 1)
	require.Equal(t, testStage, in[0].Stage)
	require.Equal(t, "web1-now", in[0].VM.Name)
	require.True(t, hasNote(queryProgress(t, env).Notes, "instant restore from the kept snapshot on host hv1: no data read from the vault"))
}

// Gone, expired, elsewhere, or --from-vault: the vault is read.
func TestRestoreInstantFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name      string
		host      string
		expires   time.Duration
		gone      bool
		fromVault bool
		note      string
	}{
		{"gone", testHost, time.Hour, true, false, "cannot be used"},
		{"expired", testHost, -time.Hour, false, false, "expired at"},
		{"other host", "hv9", time.Hour, false, false, "kept on host hv9, and this restore runs on hv1"},
		{"from vault", testHost, time.Hour, false, true, "--from-vault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			m := mockKeptRestore(env, tc.host, time.Now().Add(tc.expires))
			if tc.gone {
				env.OnActivity(hostAct.NewVMFromKept, mock.Anything, mock.Anything).Return(platform.VM{},
					temporal.NewNonRetryableApplicationError("kept image missing", activities.ErrTypeKeptGone, nil)).Once()
			} else {
				never(env, hostAct.NewVMFromKept)
			}
			res := restoreNew(env, tc.fromVault)
			require.NoError(t, env.GetWorkflowError())
			require.Nil(t, res.Instant)
			require.Len(t, m.restoresByDisk(t), 3)
			require.True(t, hasNote(queryProgress(t, env).Notes, tc.note), "%q", queryProgress(t, env).Notes)
		})
	}
}
