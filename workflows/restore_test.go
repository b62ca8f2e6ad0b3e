package workflows

import (
	"context"
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

const (
	testRPID  = "20250102T030405Z-abc123"
	testJobID = "restore-job-1"
	testStage = platform.RestoreStage(testJobID)
)

// testRecoveryPoint: the OS and data disks were backed up; the VM's
// metadata also lists its temp disk, running with the extension installed.
func testRecoveryPoint() activities.RecoveryPointInfo {
	vm := testVMWith(platform.PowerRunning)
	vm.Extension = platform.ExtensionStatus{Installed: true, Healthy: true, Version: "1.0"}
	return activities.RecoveryPointInfo{
		Vault: testPin,
		RecoveryPoint: vault.RecoveryPoint{
			ID: testRPID, VM: testVM, Host: testHost, Type: vault.BackupFull, Consistency: "crash-consistent",
			Disks: []vault.DiskRecord{
				{Name: "os", Role: "os", SizeBytes: 64 * gib, Root: rootOf("root-os"), Method: vault.MethodChecksum},
				{Name: "data0", Role: "data", LUN: 3, SizeBytes: 128 * gib, Root: rootOf("root-data0"), Method: vault.MethodChecksum},
			},
		},
		VM: vm,
	}
}

var testSizes = map[string]int64{"os": 64 * gib, "data0": 128 * gib, "temp": 16 * gib}

type restoreMocks struct {
	load    recorder[activities.LoadRecoveryPointInput]
	prepare recorder[activities.PrepareNewVMInput]
	restore recorder[activities.RestoreDiskInput]
	commit  recorder[activities.CommitRestoreInput]
	abort   recorder[activities.AbortRestoreInput]
}

// mockRestore: LoadRecoveryPoint answers testRecoveryPoint, and
// CommitRestore and AbortRestore succeed and are recorded.
func mockRestore(env *testsuite.TestWorkflowEnvironment) *restoreMocks {
	m := &restoreMocks{}
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: testJobID})
	env.OnActivity(vaultAct.LoadRecoveryPoint, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.LoadRecoveryPointInput) (activities.RecoveryPointInfo, error) {
		m.load.add(in)
		return testRecoveryPoint(), nil
	}).Once()
	env.OnActivity(hostAct.CommitRestore, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CommitRestoreInput) (activities.CommitRestoreResult, error) {
		m.commit.add(in)
		out := activities.CommitRestoreResult{}
		if in.Target.VM != "" && !in.DiscardReplaced {
			out.Kept = map[string]string{"os": "os.raw.replaced-x"}
		}
		return out, nil
	})
	env.OnActivity(hostAct.AbortRestore, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AbortRestoreInput) error {
		m.abort.add(in)
		return nil
	})
	env.OnActivity(hostAct.PrepareNewVM, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PrepareNewVMInput) (platform.VM, error) {
		m.prepare.add(in)
		return in.VM, nil
	})
	return m
}

func (m *restoreMocks) restoreOK(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(hostAct.RestoreDisk, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RestoreDiskInput) (activities.RestoreDiskResult, error) {
		m.restore.add(in)
		return restoreResult(in), nil
	})
}

func restoreResult(in activities.RestoreDiskInput) activities.RestoreDiskResult {
	size := testSizes[in.Disk]
	return activities.RestoreDiskResult{Disk: in.Disk, SizeBytes: size, Result: vault.RestoreResult{Size: size, WrittenBytes: size / 2}}
}

func (m *restoreMocks) restoresByDisk(t *testing.T) map[string]activities.RestoreDiskInput {
	t.Helper()
	out := map[string]activities.RestoreDiskInput{}
	for _, in := range m.restore.all() {
		_, dup := out[in.Disk]
		require.False(t, dup, "disk %s restored twice", in.Disk)
		out[in.Disk] = in
	}
	return out
}

func TestRestoreNewVM(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	m.restoreOK(env)
	never(env, hostAct.DescribeVM)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testVM + "/" + testRPID, Mode: RestoreNewVM, TargetVM: "web1-restored", Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RestoreVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	assertNotCalled(t, env, "DescribeVM", "AbortRestore")

	require.Equal(t, []activities.LoadRecoveryPointInput{{Ref: testVM + "/" + testRPID}}, m.load.all())
	prepares := m.prepare.all()
	require.Len(t, prepares, 1)
	require.Equal(t, testStage, prepares[0].Stage, "the stage is the job id, the same on every retry")
	spec := prepares[0].VM
	require.Equal(t, "web1-restored", spec.Name)
	require.Equal(t, platform.PowerStopped, spec.Power)
	require.Equal(t, platform.ExtensionStatus{}, spec.Extension, "the new VM has no extension yet")
	require.Equal(t, 2, spec.CPUs)
	require.Equal(t, 4096, spec.MemoryMB)
	require.Equal(t, []platform.Disk{
		{Name: "os", Role: platform.DiskOS, SizeBytes: 64 * gib},
		{Name: "data0", Role: platform.DiskData, LUN: 3, SizeBytes: 128 * gib},
		{Name: "temp", Role: platform.DiskTemp, SizeBytes: 16 * gib},
	}, spec.Disks, "files and formats are left to the target platform")

	rs := m.restoresByDisk(t)
	require.Len(t, rs, 3, "os, data0 and the temp disk (staged empty)")
	for _, d := range []string{"os", "data0", "temp"} {
		require.Equal(t, activities.RestoreDiskInput{Vault: testPin, RecoveryPoint: testVM + "/" + testRPID, Disk: d,
			Target: activities.RestoreTarget{VM: "web1-restored"}, Stage: testStage}, rs[d], "the host reads roots from the manifest, not the payload")
	}
	require.Equal(t, []activities.CommitRestoreInput{{Target: activities.RestoreTarget{VM: "web1-restored"}, Stage: testStage, Sizes: testSizes}}, m.commit.all())

	require.Equal(t, RestoreNewVM, res.Mode)
	require.Equal(t, "web1-restored", res.VM)
	require.Equal(t, testPin.Location, res.Vault)
	p := queryProgress(t, env)
	require.Equal(t, PhaseDone, p.Phase)
	require.Equal(t, KindRestore, p.Kind)
	ds := diskStates(p)
	require.Len(t, ds, 3)
	for name, d := range ds {
		require.Equal(t, DiskDone, d.State, name)
		require.Equal(t, d.SizeBytes, d.DoneBytes, name)
	}
}

func TestRestoreReplaceRunningTarget(t *testing.T) {
	env := newEnv(t)
	mockRestore(env)
	var described recorder[activities.VMInput]
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VMInput) (platform.VM, error) {
		described.add(in)
		return testVMWith(platform.PowerRunning), nil
	})
	never(env, hostAct.RestoreDisk)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace, Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	app := requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeVMRunning)
	require.True(t, app.NonRetryable())
	// No target given: the recovery point's own VM.
	require.Equal(t, []activities.VMInput{{VM: testVM}}, described.all())
	assertNotCalled(t, env, "RestoreDisk", "PrepareNewVM", "CommitRestore")
	require.Equal(t, PhaseFailed, queryProgress(t, env).Phase)
}

func TestRestoreReplaceStoppedTarget(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	m.restoreOK(env)
	env.OnActivity(hostAct.DescribeVM, mock.Anything, activities.VMInput{VM: "web2"}).Return(func(_ context.Context, in activities.VMInput) (platform.VM, error) {
		vm := testVMWith(platform.PowerStopped)
		vm.Name = "web2"
		return vm, nil
	}).Once()

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace, TargetVM: "web2", Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RestoreVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, "web2", res.VM)
	for name, in := range m.restoresByDisk(t) {
		require.Equal(t, activities.RestoreTarget{VM: "web2"}, in.Target, name)
	}
	require.Equal(t, map[string]string{"os": "os.raw.replaced-x"}, res.Kept, "the replaced disks are kept and the result says where")
	require.Contains(t, queryProgress(t, env).Notes, "disk os: the replaced image is kept at os.raw.replaced-x")
	assertNotCalled(t, env, "PrepareNewVM", "AbortRestore")
}

// A target VM that lacks a disk of the recovery point is refused before any write.
func TestRestoreReplaceMissingDisk(t *testing.T) {
	env := newEnv(t)
	mockRestore(env)
	vm := testVMWith(platform.PowerStopped)
	vm.Disks = vm.Disks[:1]
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(vm, nil)
	never(env, hostAct.RestoreDisk)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace, Host: testHost})
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeBadRequest)
	assertNotCalled(t, env, "RestoreDisk", "CommitRestore")
}

func TestRestoreDisks(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	m.restoreOK(env)
	var checked recorder[activities.CheckRestoreTargetInput]
	env.OnActivity(hostAct.CheckRestoreTarget, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CheckRestoreTargetInput) error {
		checked.add(in)
		return nil
	}).Once()
	never(env, hostAct.DescribeVM)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreDisks, TargetDir: "/srv/restore", Host: testHost, Force: true})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RestoreVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Empty(t, res.VM)
	target := activities.RestoreTarget{Dir: "/srv/restore", Force: true}
	require.Equal(t, []activities.CheckRestoreTargetInput{{Target: target, Disks: []string{"os", "data0", "temp"}}}, checked.all())
	rs := m.restoresByDisk(t)
	require.Len(t, rs, 3)
	for name, in := range rs {
		require.Equal(t, target, in.Target, name)
	}
	require.Len(t, m.commit.all(), 1)
	assertNotCalled(t, env, "PrepareNewVM", "DescribeVM", "AbortRestore")
}

// A disks-only restore over existing files is refused before any data moves.
func TestRestoreDisksTargetRefused(t *testing.T) {
	env := newEnv(t)
	mockRestore(env)
	env.OnActivity(hostAct.CheckRestoreTarget, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("restore disks: /srv/restore/os.raw exists", activities.ErrTypeTargetExists, nil))
	never(env, hostAct.RestoreDisk)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreDisks, TargetDir: "/srv/restore", Host: testHost})
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeTargetExists)
	assertNotCalled(t, env, "RestoreDisk", "CommitRestore", "AbortRestore")
}

func TestRestoreBadRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   RestoreVMInput
	}{
		{"disks relative dir", RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreDisks, TargetDir: "restore/here", Host: testHost}},
		{"disks no dir", RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreDisks, Host: testHost}},
		{"disks and vm", RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreDisks, TargetDir: "/srv", TargetVM: "x", Host: testHost}},
		{"new-vm without name", RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreNewVM, Host: testHost}},
		{"new-vm with dir", RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreNewVM, TargetVM: "x", TargetDir: "/srv", Host: testHost}},
		{"replace with dir", RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace, TargetDir: "/srv", Host: testHost}},
		{"unknown mode", RestoreVMInput{RecoveryPoint: testRPID, Mode: "everything", Host: testHost}},
		{"no host", RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace}},
		{"no recovery point", RestoreVMInput{Mode: RestoreReplace, Host: testHost}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			for _, a := range []any{vaultAct.LoadRecoveryPoint, hostAct.PrepareNewVM, hostAct.DescribeVM, hostAct.RestoreDisk} {
				never(env, a)
			}
			env.ExecuteWorkflow(RestoreVM, tc.in)
			require.True(t, env.IsWorkflowCompleted())
			requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeBadRequest)
			assertNotCalled(t, env, "LoadRecoveryPoint", "PrepareNewVM", "DescribeVM", "RestoreDisk")
		})
	}
}

// One failed disk fails the restore, cancels the others, commits nothing,
// and removes what was staged (and the new VM it prepared).
func TestRestoreDiskFailsAborts(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	isDisk := func(name string) any {
		return mock.MatchedBy(func(in activities.RestoreDiskInput) bool { return in.Disk == name })
	}
	env.OnActivity(hostAct.RestoreDisk, mock.Anything, isDisk("data0")).Return(activities.RestoreDiskResult{},
		temporal.NewNonRetryableApplicationError("blob missing", activities.ErrTypeMissingData, nil)).Once()
	env.OnActivity(hostAct.RestoreDisk, mock.Anything, mock.Anything).After(time.Hour).Return(func(_ context.Context, in activities.RestoreDiskInput) (activities.RestoreDiskResult, error) {
		m.restore.add(in)
		return restoreResult(in), nil
	})

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreNewVM, TargetVM: "new", Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeMissingData)
	require.Empty(t, m.restore.all(), "the other disks were cancelled, not finished")
	require.Empty(t, m.commit.all(), "nothing is committed")
	require.Equal(t, []activities.AbortRestoreInput{{Target: activities.RestoreTarget{VM: "new"}, Stage: testStage}}, m.abort.all())
	p := queryProgress(t, env)
	require.Equal(t, PhaseFailed, p.Phase)
	ds := diskStates(p)
	for _, name := range []string{"os", "data0", "temp"} {
		require.Equal(t, DiskFailed, ds[name].State, name)
	}
}

// A failed commit is compensated too, and the job keeps the commit's error type.
func TestRestoreCommitFailsAborts(t *testing.T) {
	env := newEnv(t)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: testJobID})
	env.OnActivity(vaultAct.LoadRecoveryPoint, mock.Anything, mock.Anything).Return(testRecoveryPoint(), nil)
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(testVMWith(platform.PowerStopped), nil)
	env.OnActivity(hostAct.RestoreDisk, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RestoreDiskInput) (activities.RestoreDiskResult, error) {
		return restoreResult(in), nil
	})
	env.OnActivity(hostAct.CommitRestore, mock.Anything, mock.Anything).Return(activities.CommitRestoreResult{},
		temporal.NewNonRetryableApplicationError("disk os is held open for writing", activities.ErrTypeDiskBusy, nil))
	var aborts recorder[activities.AbortRestoreInput]
	env.OnActivity(hostAct.AbortRestore, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AbortRestoreInput) error {
		aborts.add(in)
		return nil
	})

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace, Host: testHost})
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeDiskBusy)
	require.Equal(t, []activities.AbortRestoreInput{{Target: activities.RestoreTarget{VM: testVM}, Stage: testStage}}, aborts.all())
}

// A cancelled restore still removes what it staged.
func TestRestoreCancelAborts(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	env.OnActivity(hostAct.RestoreDisk, mock.Anything, mock.Anything).After(time.Hour).Return(func(_ context.Context, in activities.RestoreDiskInput) (activities.RestoreDiskResult, error) {
		return restoreResult(in), nil
	})
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreNewVM, TargetVM: "new", Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	require.True(t, temporal.IsCanceledError(env.GetWorkflowError()), "got %v", env.GetWorkflowError())
	require.Empty(t, m.commit.all())
	require.Len(t, m.abort.all(), 1)
}

// A restore that outlives its limit is stopped with JobLimit and removes
// what it staged.
func TestRestoreJobLimitAborts(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	env.OnActivity(hostAct.RestoreDisk, mock.Anything, mock.Anything).After(3 * time.Hour).Return(func(_ context.Context, in activities.RestoreDiskInput) (activities.RestoreDiskResult, error) {
		return restoreResult(in), nil
	})
	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreNewVM, TargetVM: "new", Host: testHost, Limit: time.Hour})
	require.True(t, env.IsWorkflowCompleted())
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeJobLimit)
	require.Empty(t, m.commit.all())
	require.Len(t, m.abort.all(), 1, "what was staged is removed")
}
