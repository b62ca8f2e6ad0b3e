package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

const testRPID = "20250102T030405Z-abc123"

// testRecoveryPoint: the OS and data disks were backed up; the VM's
// metadata also lists its temp disk, running with the extension installed.
func testRecoveryPoint() activities.RecoveryPointInfo {
	vm := testVMWith(platform.PowerRunning)
	vm.Extension = platform.ExtensionStatus{Installed: true, Healthy: true, Version: "1.0"}
	return activities.RecoveryPointInfo{
		RecoveryPoint: vault.RecoveryPoint{
			ID: testRPID, VM: testVM, Host: testHost, Type: "full", Consistency: "crash-consistent",
			Disks: []vault.DiskRecord{
				{Name: "os", Role: "os", SizeBytes: 64 * gib, Root: rootOf("root-os"), Method: "checksum"},
				{Name: "data0", Role: "data", LUN: 3, SizeBytes: 128 * gib, Root: rootOf("root-data0"), Method: "checksum"},
			},
		},
		VM: vm,
	}
}

type restoreMocks struct {
	load    recorder[activities.LoadRecoveryPointInput]
	create  recorder[activities.CreateVMInput]
	restore recorder[activities.RestoreDiskInput]
}

func mockRestore(env *testsuite.TestWorkflowEnvironment) *restoreMocks {
	m := &restoreMocks{}
	env.OnActivity(vaultAct.LoadRecoveryPoint, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.LoadRecoveryPointInput) (activities.RecoveryPointInfo, error) {
		m.load.add(in)
		return testRecoveryPoint(), nil
	}).Once()
	return m
}

func (m *restoreMocks) restoreOK(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(hostAct.RestoreDisk, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RestoreDiskInput) (activities.RestoreDiskResult, error) {
		m.restore.add(in)
		return restoreResult(in), nil
	})
}

func restoreResult(in activities.RestoreDiskInput) activities.RestoreDiskResult {
	r := activities.RestoreDiskResult{Disk: in.Disk.Name, Result: vault.RestoreResult{Size: in.Disk.SizeBytes, WrittenBytes: in.Disk.SizeBytes / 2}}
	if in.TargetDir != "" {
		r.Path = in.TargetDir + "/" + in.FileName
	}
	return r
}

func (m *restoreMocks) restoresByDisk(t *testing.T) map[string]activities.RestoreDiskInput {
	t.Helper()
	out := map[string]activities.RestoreDiskInput{}
	for _, in := range m.restore.all() {
		_, dup := out[in.Disk.Name]
		require.False(t, dup, "disk %s restored twice", in.Disk.Name)
		out[in.Disk.Name] = in
	}
	return out
}

func TestRestoreNewVM(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	m.restoreOK(env)
	env.OnActivity(hostAct.CreateVM, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateVMInput) (platform.VM, error) {
		m.create.add(in)
		return in.VM, nil
	}).Once()
	never(env, hostAct.DescribeVM)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testVM + "/" + testRPID, Mode: RestoreNewVM, TargetVM: "web1-restored", Host: testHost, Vault: "main"})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RestoreVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	env.AssertExpectations(t)
	assertNotCalled(t, env, "DescribeVM")

	require.Equal(t, []activities.LoadRecoveryPointInput{{Ref: testVM + "/" + testRPID}}, m.load.all())
	creates := m.create.all()
	require.Len(t, creates, 1)
	spec := creates[0].VM
	require.Equal(t, "web1-restored", spec.Name)
	require.Equal(t, platform.PowerStopped, spec.Power)
	require.Equal(t, platform.ExtensionStatus{}, spec.Extension, "the new VM has no extension yet")
	require.Equal(t, platform.OSLinux, spec.OS)
	require.Equal(t, 2, spec.CPUs)
	require.Equal(t, 4096, spec.MemoryMB)
	require.Equal(t, []platform.Disk{
		{Name: "os", Role: platform.DiskOS, SizeBytes: 64 * gib},
		{Name: "data0", Role: platform.DiskData, LUN: 3, SizeBytes: 128 * gib},
		{Name: "temp", Role: platform.DiskTemp, SizeBytes: 16 * gib},
	}, spec.Disks, "files and formats are left to the target platform")

	env.AssertActivityNumberOfCalls(t, "RestoreDisk", 3)
	rs := m.restoresByDisk(t)
	rp := testRecoveryPoint().RecoveryPoint
	require.Equal(t, activities.RestoreDiskInput{RecoveryPoint: testVM + "/" + testRPID, Disk: rp.Disks[0], TargetVM: "web1-restored"}, rs["os"])
	require.Equal(t, activities.RestoreDiskInput{RecoveryPoint: testVM + "/" + testRPID, Disk: rp.Disks[1], TargetVM: "web1-restored"}, rs["data0"])
	require.Equal(t, activities.RestoreDiskInput{RecoveryPoint: testVM + "/" + testRPID,
		Disk: vault.DiskRecord{Name: "temp", Role: "temp", SizeBytes: 16 * gib}, TargetVM: "web1-restored"}, rs["temp"],
		"the temp disk comes back empty, from the VM metadata")

	require.Equal(t, RestoreNewVM, res.Mode)
	require.Equal(t, "web1-restored", res.VM)
	require.Equal(t, testVM+"/"+testRPID, res.RecoveryPoint)
	require.Equal(t, []activities.RestoreDiskResult{restoreResult(rs["os"]), restoreResult(rs["data0"]), restoreResult(rs["temp"])}, res.Disks)

	p := queryProgress(t, env)
	require.Equal(t, PhaseDone, p.Phase)
	require.Equal(t, KindRestore, p.Kind)
	require.Equal(t, testVM, p.VM)
	require.Equal(t, testVM+"/"+testRPID, p.RecoveryPoint)
	ds := diskStates(p)
	require.Len(t, ds, 3)
	for name, d := range ds {
		require.Equal(t, "done", d.State, name)
		require.Equal(t, d.SizeBytes, d.DoneBytes, name)
	}
	require.Equal(t, 16*gib, ds["temp"].SizeBytes)
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
	never(env, hostAct.CreateVM)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace, Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	app := requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeVMRunning)
	require.True(t, app.NonRetryable())
	// No target given: the recovery point's own VM.
	require.Equal(t, []activities.VMInput{{VM: testVM}}, described.all())
	assertNotCalled(t, env, "RestoreDisk", "CreateVM")
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
	never(env, hostAct.CreateVM)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreReplace, TargetVM: "web2", Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RestoreVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	env.AssertExpectations(t)
	require.Equal(t, "web2", res.VM)
	rs := m.restoresByDisk(t)
	require.Len(t, rs, 3)
	for name, in := range rs {
		require.Equal(t, "web2", in.TargetVM, name)
		require.Empty(t, in.TargetDir, name)
	}
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
	assertNotCalled(t, env, "RestoreDisk")
}

func TestRestoreDisks(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	m.restoreOK(env)
	never(env, hostAct.CreateVM)
	never(env, hostAct.DescribeVM)

	env.ExecuteWorkflow(RestoreVM, RestoreVMInput{RecoveryPoint: testRPID, Mode: RestoreDisks, TargetDir: "/srv/restore", Host: testHost})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RestoreVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Empty(t, res.VM)
	rs := m.restoresByDisk(t)
	require.Len(t, rs, 3)
	for name, in := range rs {
		require.Equal(t, "/srv/restore", in.TargetDir, name)
		require.Equal(t, name+".raw", in.FileName)
		require.Empty(t, in.TargetVM, name)
	}
	require.Equal(t, "/srv/restore/os.raw", res.Disks[0].Path)
	assertNotCalled(t, env, "CreateVM", "DescribeVM")
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
			for _, a := range []any{vaultAct.LoadRecoveryPoint, hostAct.CreateVM, hostAct.DescribeVM, hostAct.RestoreDisk} {
				never(env, a)
			}
			env.ExecuteWorkflow(RestoreVM, tc.in)
			require.True(t, env.IsWorkflowCompleted())
			requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeBadRequest)
			assertNotCalled(t, env, "LoadRecoveryPoint", "CreateVM", "DescribeVM", "RestoreDisk")
		})
	}
}

// One failed disk fails the restore and cancels the others.
func TestRestoreDiskFails(t *testing.T) {
	env := newEnv(t)
	m := mockRestore(env)
	env.OnActivity(hostAct.CreateVM, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateVMInput) (platform.VM, error) {
		return in.VM, nil
	})
	isDisk := func(name string) any {
		return mock.MatchedBy(func(in activities.RestoreDiskInput) bool { return in.Disk.Name == name })
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
	p := queryProgress(t, env)
	require.Equal(t, PhaseFailed, p.Phase)
	ds := diskStates(p)
	for _, name := range []string{"os", "data0", "temp"} {
		require.Equal(t, "failed", ds[name].State, name)
	}
}
