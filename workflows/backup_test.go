package workflows

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

const testRunID = "default-test-run-id" // the test env's run id

// backupMocks mocks the activities every successful backup calls and
// records their inputs. TransferDisk and EnsureExtension are up to each test.
type backupMocks struct {
	describe recorder[activities.VMInput]
	ext      recorder[activities.VMInput]
	snap     recorder[activities.SnapshotInput]
	prep     recorder[activities.PrepareBackupInput]
	xfer     recorder[activities.TransferDiskInput]
	del      recorder[platform.Snapshot]
	save     recorder[activities.SaveRecoveryPointInput]
}

// mockBackup: DescribeVM answers vm, CreateSnapshot achieves got (with
// notes), PrepareBackup answers prep, and DeleteSnapshot and
// SaveRecoveryPoint succeed.
func mockBackup(env *testsuite.TestWorkflowEnvironment, vm platform.VM, prep activities.PrepareBackupResult, got platform.Consistency, notes ...string) *backupMocks {
	m := &backupMocks{}
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: BackupWorkflowID(vm.Name)})
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VMInput) (platform.VM, error) {
		m.describe.add(in)
		return vm, nil
	})
	env.OnActivity(hostAct.CreateSnapshot, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SnapshotInput) (platform.Snapshot, error) {
		m.snap.add(in)
		return platform.Snapshot{ID: in.ID, VM: in.VM, Consistency: got, Notes: notes, Token: "token-" + in.ID}, nil
	}).Once()
	env.OnActivity(vaultAct.PrepareBackup, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PrepareBackupInput) (activities.PrepareBackupResult, error) {
		m.prep.add(in)
		return prep, nil
	}).Once()
	env.OnActivity(hostAct.DeleteSnapshot, mock.Anything, mock.Anything).Return(func(_ context.Context, s platform.Snapshot) error {
		m.del.add(s)
		return nil
	}).Once()
	env.OnActivity(vaultAct.SaveRecoveryPoint, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SaveRecoveryPointInput) (string, error) {
		m.save.add(in)
		return in.RecoveryPoint.Ref(), nil
	}).Once()
	return m
}

// transferOK makes every TransferDisk succeed with xferResult.
func (m *backupMocks) transferOK(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(hostAct.TransferDisk, mock.Anything, mock.Anything).Return(m.transfer)
}

func (m *backupMocks) transfer(_ context.Context, in activities.TransferDiskInput) (activities.TransferDiskResult, error) {
	m.xfer.add(in)
	return xferResult(in.Disk), nil
}

// xferByDisk indexes the recorded transfers by disk and fails on a disk
// transferred twice.
func (m *backupMocks) xferByDisk(t *testing.T) map[string]activities.TransferDiskInput {
	t.Helper()
	out := map[string]activities.TransferDiskInput{}
	for _, in := range m.xfer.all() {
		_, dup := out[in.Disk]
		require.False(t, dup, "disk %s transferred twice", in.Disk)
		out[in.Disk] = in
	}
	return out
}

func backupInput() BackupVMInput {
	return BackupVMInput{VM: testVM, Host: testHost}
}

func queryProgress(t *testing.T, env *testsuite.TestWorkflowEnvironment) Progress {
	t.Helper()
	v, err := env.QueryWorkflow(QueryProgress)
	require.NoError(t, err)
	var p Progress
	require.NoError(t, v.Get(&p))
	return p
}

func diskStates(p Progress) map[string]DiskStatus {
	out := map[string]DiskStatus{}
	for _, d := range p.Disks {
		out[d.Disk] = d
	}
	return out
}

func TestBackupStoppedVMFull(t *testing.T) {
	env := newEnv(t)
	vm := testVMWith(platform.PowerStopped)
	m := mockBackup(env, vm, activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	never(env, hostAct.EnsureExtension)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res BackupVMResult
	require.NoError(t, env.GetWorkflowResult(&res))

	assertNotCalled(t, env, "EnsureExtension")
	env.AssertActivityNumberOfCalls(t, "DescribeVM", 1)
	env.AssertActivityNumberOfCalls(t, "TransferDisk", 2)
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
	env.AssertActivityNumberOfCalls(t, "SaveRecoveryPoint", 1)
	env.AssertExpectations(t)

	require.Equal(t, []activities.VMInput{{VM: testVM}}, m.describe.all())

	// A stopped VM has nothing to quiesce: crash-consistent is asked for.
	snaps := m.snap.all()
	require.Len(t, snaps, 1)
	require.Equal(t, activities.SnapshotInput{VM: testVM, ID: "vmvault-" + testRunID, Consistency: platform.CrashConsistent}, snaps[0])
	snap := platform.Snapshot{ID: "vmvault-" + testRunID, VM: testVM, Consistency: platform.CrashConsistent, Token: "token-vmvault-" + testRunID}

	require.Equal(t, []activities.PrepareBackupInput{{VM: testVM, Disks: []string{"os", "data0"}}}, m.prep.all())

	// Every disk but the temp disk, from the snapshot, with no parent.
	xfers := m.xferByDisk(t)
	require.Len(t, xfers, 2)
	require.NotContains(t, xfers, "temp")
	for _, name := range []string{"os", "data0"} {
		require.Equal(t, activities.TransferDiskInput{Vault: testPin, VM: testVM, Snapshot: snap, Disk: name}, xfers[name], "disk %s", name)
	}

	require.Equal(t, []platform.Snapshot{snap}, m.del.all())

	saves := m.save.all()
	require.Len(t, saves, 1)
	require.Equal(t, testPin, saves[0].Vault, "the recovery point goes to the vault the job is pinned to")
	rp := saves[0].RecoveryPoint
	require.Equal(t, vm, saves[0].VM, "the VM's metadata, temp disk included, goes with the recovery point")
	require.Regexp(t, regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{6}$`), rp.ID)
	require.Equal(t, testVM, rp.VM)
	require.Equal(t, testHost, rp.Host)
	require.Equal(t, vault.BackupFull, rp.Type)
	require.Empty(t, rp.Parent)
	require.Equal(t, "crash-consistent", rp.Consistency)
	require.Equal(t, BackupWorkflowID(testVM)+"/"+testRunID, rp.Job)
	require.Equal(t, rp.StartedAt.Format("20060102T150405Z"), rp.ID[:16])
	require.False(t, rp.CompletedAt.Before(rp.StartedAt))
	osR, dataR := xferResult("os").Result, xferResult("data0").Result
	wantDisks := []vault.DiskRecord{
		{Name: "os", Role: "os", SizeBytes: osR.Size, Root: osR.Root, Method: "checksum", Stats: osR.Stats},
		{Name: "data0", Role: "data", LUN: 3, SizeBytes: dataR.Size, Root: dataR.Root, Method: "checksum", Stats: dataR.Stats},
	}
	require.Equal(t, wantDisks, rp.Disks)

	require.Equal(t, testVM+"/"+rp.ID, res.RecoveryPoint)
	require.Equal(t, vault.BackupFull, res.Type)
	require.Equal(t, "crash-consistent", res.Consistency.String())
	require.Empty(t, res.Parent)
	require.Equal(t, wantDisks, res.Disks)
	require.Equal(t, vault.DiskStats{
		ScannedBytes: 2000 + 5000, DataBytes: 1800 + 4500, ChangedBytes: 1600 + 4000, NewBytes: 1400 + 3500,
		StoredBytes: 1200 + 3000, NewBlocks: 2 + 5, Packs: 2,
	}, res.Totals)
	require.ElementsMatch(t, []string{"note os", "note data0"}, res.Notes)

	p := queryProgress(t, env)
	require.Equal(t, PhaseDone, p.Phase)
	require.Equal(t, KindBackup, p.Kind)
	require.Equal(t, "full", p.BackupType)
	require.Equal(t, "crash-consistent", p.Consistency.String())
	require.Equal(t, res.RecoveryPoint, p.RecoveryPoint)
	require.Empty(t, p.Error)
	ds := diskStates(p)
	require.Len(t, ds, 2)
	require.Equal(t, DiskDone, ds["os"].State)
	require.Equal(t, osR.Size, ds["os"].DoneBytes)
	require.Equal(t, DiskDone, ds["data0"].State)
	require.Equal(t, dataR.Stats.NewBytes, ds["data0"].UploadedBytes)
}

func TestBackupIncremental(t *testing.T) {
	env := newEnv(t)
	vm := testVMWith(platform.PowerStopped)
	parent := testVM + "/20250101T000000Z-abcdef"
	prep := activities.PrepareBackupResult{
		Vault:        testPin,
		Parent:       parent,
		ParentRoots:  map[string]vault.ID{"os": rootOf("parent-os"), "data0": rootOf("parent-data0")},
		ParentTokens: map[string]string{"os": "cbt-os"},
		Notes:        []string{"disk data0: cbt: not trusted since the audit of " + parent + " found blocks the bitmap missed; comparing checksums once more"},
	}
	m := mockBackup(env, vm, prep, platform.CrashConsistent)
	m.transferOK(env)
	never(env, hostAct.EnsureExtension)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res BackupVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	env.AssertActivityNumberOfCalls(t, "TransferDisk", 2)
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
	env.AssertExpectations(t)

	xfers := m.xferByDisk(t)
	require.Len(t, xfers, 2)
	require.NotNil(t, xfers["os"].Parent)
	require.Equal(t, rootOf("parent-os"), *xfers["os"].Parent)
	require.Equal(t, "cbt-os", xfers["os"].ParentSnapshotToken)
	require.NotNil(t, xfers["data0"].Parent)
	require.Equal(t, rootOf("parent-data0"), *xfers["data0"].Parent)
	require.Empty(t, xfers["data0"].ParentSnapshotToken)

	saves := m.save.all()
	require.Len(t, saves, 1)
	require.Equal(t, vault.BackupIncremental, saves[0].RecoveryPoint.Type)
	require.Equal(t, parent, saves[0].RecoveryPoint.Parent)
	require.Equal(t, vault.BackupIncremental, res.Type)
	require.Equal(t, parent, res.Parent)
	require.Equal(t, "incremental", queryProgress(t, env).BackupType)
	require.Contains(t, res.Notes, prep.Notes[0])
}

// A disk added since the parent has no parent root: it is sent in full.
func TestBackupIncrementalNewDisk(t *testing.T) {
	env := newEnv(t)
	vm := testVMWith(platform.PowerStopped)
	prep := activities.PrepareBackupResult{Vault: testPin, Parent: testVM + "/p", ParentRoots: map[string]vault.ID{"os": rootOf("parent-os")}}
	m := mockBackup(env, vm, prep, platform.CrashConsistent)
	m.transferOK(env)
	never(env, hostAct.EnsureExtension)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.NoError(t, env.GetWorkflowError())
	xfers := m.xferByDisk(t)
	require.NotNil(t, xfers["os"].Parent)
	require.Nil(t, xfers["data0"].Parent)
}

func TestBackupRunningVMAppConsistentFallsBackToFile(t *testing.T) {
	env := newEnv(t)
	const snapNote = "application quiesce timed out: file-consistent"
	m := mockBackup(env, testVMWith(platform.PowerRunning), activities.PrepareBackupResult{Vault: testPin}, platform.FileConsistent, snapNote)
	m.transferOK(env)
	env.OnActivity(hostAct.EnsureExtension, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VMInput) (platform.ExtensionStatus, error) {
		m.ext.add(in)
		return platform.ExtensionStatus{Installed: true, Healthy: true, Version: "1.2.3"}, nil
	}).Once()

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res BackupVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	env.AssertExpectations(t)

	require.Equal(t, []activities.VMInput{{VM: testVM}}, m.ext.all())
	snaps := m.snap.all()
	require.Len(t, snaps, 1)
	require.Equal(t, platform.AppConsistent, snaps[0].Consistency)

	require.Equal(t, "file-consistent", res.Consistency.String())
	require.Equal(t, "file-consistent", m.save.all()[0].RecoveryPoint.Consistency)
	require.Contains(t, res.Notes, snapNote)
	p := queryProgress(t, env)
	require.Equal(t, "file-consistent", p.Consistency.String())
	require.Contains(t, p.Notes, snapNote)
	for _, x := range m.xfer.all() {
		require.Equal(t, platform.FileConsistent, x.Snapshot.Consistency)
	}
}

func TestBackupRunningVMExtensionFails(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerRunning), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	env.OnActivity(hostAct.EnsureExtension, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VMInput) (platform.ExtensionStatus, error) {
		m.ext.add(in)
		return platform.ExtensionStatus{}, temporal.NewNonRetryableApplicationError("guest agent not responding", activities.ErrTypeNotSupported, nil)
	})

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res BackupVMResult
	require.NoError(t, env.GetWorkflowResult(&res))
	env.AssertExpectations(t)

	// Non-retryable: asked once, not five times.
	env.AssertActivityNumberOfCalls(t, "EnsureExtension", 1)
	snaps := m.snap.all()
	require.Len(t, snaps, 1)
	require.Equal(t, platform.CrashConsistent, snaps[0].Consistency)
	require.Equal(t, "crash-consistent", res.Consistency.String())
	env.AssertActivityNumberOfCalls(t, "TransferDisk", 2)
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)

	var note string
	for _, n := range res.Notes {
		if regexp.MustCompile(`backup extension unavailable`).MatchString(n) {
			note = n
		}
	}
	require.NotEmpty(t, note, "notes: %q", res.Notes)
	require.Contains(t, note, "guest agent not responding")
	require.Contains(t, note, "crash-consistent")
	require.Contains(t, queryProgress(t, env).Notes, note)
}

func TestBackupTransferFailsCleansUp(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	never(env, hostAct.EnsureExtension)
	never(env, vaultAct.SaveRecoveryPoint)
	isDisk := func(name string) any {
		return mock.MatchedBy(func(in activities.TransferDiskInput) bool { return in.Disk == name })
	}
	env.OnActivity(hostAct.TransferDisk, mock.Anything, isDisk("data0")).Return(func(_ context.Context, in activities.TransferDiskInput) (activities.TransferDiskResult, error) {
		m.xfer.add(in)
		return activities.TransferDiskResult{}, temporal.NewNonRetryableApplicationError("blob 1234 fails its check", activities.ErrTypeCorruptData, nil)
	})
	// The other disk is still running when data0 fails: it gets cancelled.
	env.OnActivity(hostAct.TransferDisk, mock.Anything, isDisk("os")).After(time.Hour).Return(m.transfer)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	app := requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeCorruptData)
	require.Contains(t, app.Error(), "blob 1234 fails its check")

	// Non-retryable: data0 is not retried. (Whether os started before it was
	// cancelled depends on timing.)
	var data0 int
	for _, in := range m.xfer.all() {
		if in.Disk == "data0" {
			data0++
		}
	}
	require.Equal(t, 1, data0)
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
	assertNotCalled(t, env, "SaveRecoveryPoint", "EnsureExtension")
	require.Len(t, m.del.all(), 1)
	require.Equal(t, "vmvault-"+testRunID, m.del.all()[0].ID)

	p := queryProgress(t, env)
	require.Equal(t, PhaseFailed, p.Phase)
	require.Contains(t, p.Error, "blob 1234 fails its check")
	require.Equal(t, DiskFailed, diskStates(p)["data0"].State)
	require.Equal(t, DiskFailed, diskStates(p)["os"].State, "os was cancelled, not waited for")
}

// When the transfer and the snapshot deletion both fail, the transfer's
// error type must survive for the CLI to match on.
func TestBackupTransferAndDeleteFail(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(testVMWith(platform.PowerStopped), nil)
	env.OnActivity(hostAct.CreateSnapshot, mock.Anything, mock.Anything).Return(platform.Snapshot{ID: "s", VM: testVM, Consistency: platform.CrashConsistent}, nil)
	env.OnActivity(vaultAct.PrepareBackup, mock.Anything, mock.Anything).Return(activities.PrepareBackupResult{Vault: testPin}, nil)
	env.OnActivity(hostAct.TransferDisk, mock.Anything, mock.Anything).Return(activities.TransferDiskResult{},
		temporal.NewNonRetryableApplicationError("bad blob", activities.ErrTypeCorruptData, nil))
	env.OnActivity(hostAct.DeleteSnapshot, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("snapshot is locked", activities.ErrTypeDiskBusy, nil))
	never(env, vaultAct.SaveRecoveryPoint)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	err := env.GetWorkflowError()
	app := requireAppErrType(t, err, activities.ErrTypeCorruptData)
	require.True(t, app.NonRetryable())
	require.Contains(t, err.Error(), "bad blob")
	require.Contains(t, err.Error(), "snapshot is locked", "the cleanup failure is reported too")
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
}

// A cancelled job whose snapshot cannot be deleted is still cancelled.
func TestBackupCancelAndDeleteFail(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(testVMWith(platform.PowerStopped), nil)
	env.OnActivity(hostAct.CreateSnapshot, mock.Anything, mock.Anything).Return(platform.Snapshot{ID: "s", VM: testVM, Consistency: platform.CrashConsistent}, nil)
	env.OnActivity(vaultAct.PrepareBackup, mock.Anything, mock.Anything).Return(activities.PrepareBackupResult{Vault: testPin}, nil)
	env.OnActivity(hostAct.TransferDisk, mock.Anything, mock.Anything).After(time.Hour).Return(xferResult("x"), nil)
	env.OnActivity(hostAct.DeleteSnapshot, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("snapshot is locked", activities.ErrTypeDiskBusy, nil))
	never(env, vaultAct.SaveRecoveryPoint)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	require.ErrorAs(t, env.GetWorkflowError(), &canceled)
	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
	assertNotCalled(t, env, "SaveRecoveryPoint")
}

func TestBackupCancelDeletesSnapshot(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	never(env, hostAct.EnsureExtension)
	never(env, vaultAct.SaveRecoveryPoint)
	env.OnActivity(hostAct.TransferDisk, mock.Anything, mock.Anything).After(time.Hour).Return(m.transfer)
	var phase Phase
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		if assert.NoError(t, err) {
			var p Progress
			assert.NoError(t, v.Get(&p))
			phase = p.Phase
		}
		env.CancelWorkflow()
	}, 10*time.Minute)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	require.Equal(t, PhaseTransfer, phase, "cancelled while transferring")
	err := env.GetWorkflowError()
	require.Error(t, err)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, err, &canceled)

	env.AssertActivityNumberOfCalls(t, "DeleteSnapshot", 1)
	require.Len(t, m.del.all(), 1)
	require.Equal(t, "vmvault-"+testRunID, m.del.all()[0].ID)
	assertNotCalled(t, env, "SaveRecoveryPoint")
	require.Equal(t, PhaseFailed, queryProgress(t, env).Phase)
}

func TestBackupLimits(t *testing.T) {
	dataDisks := func(n int, size int64) []platform.Disk {
		d := []platform.Disk{{Name: "os", Role: platform.DiskOS, SizeBytes: 64 * gib}}
		for i := range n {
			d = append(d, platform.Disk{Name: fmt.Sprintf("data%d", i), Role: platform.DiskData, LUN: i, SizeBytes: size})
		}
		return d
	}
	for _, tc := range []struct {
		name  string
		power platform.PowerState
		disks []platform.Disk
	}{
		{"17 data disks", platform.PowerStopped, dataDisks(17, gib)},
		{"17 data disks running", platform.PowerRunning, dataDisks(17, gib)},
		{"4096 GiB data disk", platform.PowerStopped, dataDisks(1, 4096*gib)},
		{"4096 GiB os disk", platform.PowerStopped, []platform.Disk{{Name: "os", Role: platform.DiskOS, SizeBytes: 4096 * gib}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			vm := platform.VM{Name: testVM, Power: tc.power, Disks: tc.disks}
			env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(vm, nil).Once()
			for _, a := range []any{hostAct.EnsureExtension, hostAct.CreateSnapshot, vaultAct.PrepareBackup, hostAct.TransferDisk, hostAct.DeleteSnapshot, vaultAct.SaveRecoveryPoint} {
				never(env, a)
			}

			env.ExecuteWorkflow(BackupVM, backupInput())
			require.True(t, env.IsWorkflowCompleted())
			requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeLimitExceeded)
			assertNotCalled(t, env, "EnsureExtension", "CreateSnapshot", "PrepareBackup", "TransferDisk", "DeleteSnapshot", "SaveRecoveryPoint")
			env.AssertExpectations(t)
			require.Equal(t, PhaseFailed, queryProgress(t, env).Phase)
		})
	}
}

// At the limits exactly, a backup runs; the temp disk is neither counted
// nor size-checked.
func TestBackupAtLimits(t *testing.T) {
	env := newEnv(t)
	disks := []platform.Disk{
		{Name: "os", Role: platform.DiskOS, SizeBytes: 4095 * gib},
		{Name: "temp", Role: platform.DiskTemp, SizeBytes: 8000 * gib},
	}
	for i := range 16 {
		disks = append(disks, platform.Disk{Name: fmt.Sprintf("data%d", i), Role: platform.DiskData, LUN: i, SizeBytes: 4095 * gib})
	}
	vm := platform.VM{Name: testVM, Power: platform.PowerStopped, Disks: disks}
	m := mockBackup(env, vm, activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	never(env, hostAct.EnsureExtension)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	env.AssertActivityNumberOfCalls(t, "TransferDisk", 17)
	xfers := m.xferByDisk(t)
	require.Len(t, xfers, 17)
	require.NotContains(t, xfers, "temp")
	var names []string
	for _, d := range m.save.all()[0].RecoveryPoint.Disks {
		names = append(names, d.Name)
	}
	require.Len(t, names, 17)
	require.Equal(t, "os", names[0], "recovery point disks keep the VM's order")
	require.Equal(t, "data15", names[16])
}

func TestValidateVM(t *testing.T) {
	vmWith := func(disks ...platform.Disk) platform.VM { return platform.VM{Name: testVM, Disks: disks} }
	data := func(n int, size int64) []platform.Disk {
		var d []platform.Disk
		for i := range n {
			d = append(d, platform.Disk{Name: fmt.Sprintf("data%d", i), Role: platform.DiskData, SizeBytes: size})
		}
		return d
	}
	osDisk := func(size int64) platform.Disk {
		return platform.Disk{Name: "os", Role: platform.DiskOS, SizeBytes: size}
	}
	for _, tc := range []struct {
		name    string
		vm      platform.VM
		limits  Limits
		wantErr string
	}{
		{"16 data disks", vmWith(append(data(16, gib), osDisk(gib))...), DefaultLimits, ""},
		{"17 data disks", vmWith(append(data(17, gib), osDisk(gib))...), DefaultLimits, "17 data disks, over the limit of 16"},
		{"4095 GiB", vmWith(osDisk(4095 * gib)), DefaultLimits, ""},
		{"4095 GiB data", vmWith(data(1, 4095*gib)...), DefaultLimits, ""},
		{"4096 GiB os", vmWith(osDisk(4096 * gib)), DefaultLimits, "disk os is 4096 GB, over the limit of 4095 GB"},
		{"4095 GiB and a byte", vmWith(data(1, 4095*gib+1)...), DefaultLimits, "disk data0"},
		{"big temp disk", vmWith(osDisk(gib), platform.Disk{Name: "temp", Role: platform.DiskTemp, SizeBytes: 9000 * gib}), DefaultLimits, ""},
		{"temp disks not counted", vmWith(append(data(16, gib), platform.Disk{Name: "temp", Role: platform.DiskTemp})...), DefaultLimits, ""},
		{"custom limits", vmWith(data(3, gib)...), Limits{MaxDataDisks: 2, MaxDiskBytes: 2 * gib}, "3 data disks, over the limit of 2"},
		{"custom size limit", vmWith(data(1, 3*gib)...), Limits{MaxDataDisks: 2, MaxDiskBytes: 2 * gib}, "over the limit of 2 GB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateVM(tc.vm, tc.limits)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

// Limits from the input replace the defaults.
func TestBackupInputLimits(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(testVMWith(platform.PowerStopped), nil)
	never(env, hostAct.CreateSnapshot)
	in := backupInput()
	in.Limits = &Limits{MaxDataDisks: 16, MaxDiskBytes: 100 * gib} // data0 is 128 GiB

	env.ExecuteWorkflow(BackupVM, in)
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeLimitExceeded)
	assertNotCalled(t, env, "CreateSnapshot")
}

func TestBackupUnknownVM(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(hostAct.DescribeVM, mock.Anything, mock.Anything).Return(platform.VM{},
		temporal.NewNonRetryableApplicationError("vm web1: vm not found", activities.ErrTypeVMNotFound, nil))
	for _, a := range []any{hostAct.EnsureExtension, hostAct.CreateSnapshot, vaultAct.PrepareBackup, hostAct.TransferDisk, hostAct.DeleteSnapshot, vaultAct.SaveRecoveryPoint} {
		never(env, a)
	}

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeVMNotFound)
	env.AssertActivityNumberOfCalls(t, "DescribeVM", 1) // non-retryable
	assertNotCalled(t, env, "EnsureExtension", "CreateSnapshot", "PrepareBackup", "TransferDisk", "DeleteSnapshot", "SaveRecoveryPoint")
	env.AssertExpectations(t)
}

func TestBackupBadRequest(t *testing.T) {
	for _, in := range []BackupVMInput{{Host: testHost}, {VM: testVM}} {
		env := newEnv(t)
		never(env, hostAct.DescribeVM)
		env.ExecuteWorkflow(BackupVM, in)
		requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeBadRequest)
		assertNotCalled(t, env, "DescribeVM")
	}
}

func TestBackupProgressQueryAndSignal(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	never(env, hostAct.EnsureExtension)
	isDisk := func(name string) any {
		return mock.MatchedBy(func(in activities.TransferDiskInput) bool { return in.Disk == name })
	}
	env.OnActivity(hostAct.TransferDisk, mock.Anything, isDisk("os")).After(5 * time.Minute).Return(m.transfer)
	env.OnActivity(hostAct.TransferDisk, mock.Anything, isDisk("data0")).After(10 * time.Minute).Return(m.transfer)

	query := func(into *Progress) {
		v, err := env.QueryWorkflow(QueryProgress)
		if assert.NoError(t, err) {
			assert.NoError(t, v.Get(into))
		}
	}
	sent := activities.DiskProgress{Disk: "data0", SizeBytes: 128 * gib, DoneBytes: 40 * gib, ScannedBytes: 40 * gib,
		ChangedBytes: 30 * gib, UploadedBytes: 20 * gib, StoredBytes: 10 * gib, BytesPerS: 1e8, Attempt: 1}
	var before, after, afterDone Progress
	env.RegisterDelayedCallback(func() {
		query(&before)
		env.SignalWorkflow(activities.SignalDiskProgress, sent)
	}, time.Minute)
	env.RegisterDelayedCallback(func() { query(&after) }, 2*time.Minute)
	// A late signal for a disk that is done changes nothing.
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(activities.SignalDiskProgress, activities.DiskProgress{Disk: "os", DoneBytes: 1})
	}, 6*time.Minute)
	env.RegisterDelayedCallback(func() { query(&afterDone) }, 7*time.Minute)

	env.ExecuteWorkflow(BackupVM, backupInput())
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, PhaseTransfer, before.Phase)
	require.Equal(t, KindBackup, before.Kind)
	require.Equal(t, testVM, before.VM)
	require.Equal(t, "full", before.BackupType)
	require.Equal(t, "crash-consistent", before.Consistency.String())
	require.Equal(t, []DiskStatus{
		{DiskProgress: activities.DiskProgress{Disk: "os", SizeBytes: 64 * gib}, State: DiskRunning},
		{DiskProgress: activities.DiskProgress{Disk: "data0", SizeBytes: 128 * gib}, State: DiskRunning},
	}, before.Disks, "temp disk not listed")

	require.Equal(t, PhaseTransfer, after.Phase)
	ds := diskStates(after)
	require.Len(t, ds, 2)
	require.Equal(t, DiskStatus{DiskProgress: sent, State: DiskRunning}, ds["data0"])
	require.Equal(t, int64(0), ds["os"].DoneBytes)

	ds = diskStates(afterDone)
	require.Equal(t, DiskDone, ds["os"].State)
	require.Equal(t, xferResult("os").Result.Size, ds["os"].DoneBytes, "late signal ignored")
	require.Equal(t, sent.DoneBytes, ds["data0"].DoneBytes)

	final := queryProgress(t, env)
	require.Equal(t, PhaseDone, final.Phase)
	ds = diskStates(final)
	require.Equal(t, DiskDone, ds["data0"].State)
	require.Equal(t, xferResult("data0").Result.Size, ds["data0"].DoneBytes)
}

// The inventory answers list-vms updates from the host and ends when idle,
// so 'vm list' leaves one workflow per host, not one per call.
func TestInventory(t *testing.T) {
	env := newEnv(t)
	vms := activities.VMList{VMs: []platform.VM{testVMWith(platform.PowerRunning), {Name: "db1", Power: platform.PowerStopped}},
		Problems: []string{"bad vm.json"}}
	env.OnActivity(hostAct.ListVMs, mock.Anything).Return(vms, nil).Twice()
	var got []activities.VMList
	list := func(id string) func() {
		return func() {
			env.UpdateWorkflow(UpdateListVMs, id, &testsuite.TestUpdateCallback{
				OnReject: func(err error) { t.Errorf("update %s rejected: %v", id, err) },
				OnAccept: func() {},
				OnComplete: func(res any, err error) {
					require.NoError(t, err)
					got = append(got, res.(activities.VMList))
				},
			})
		}
	}
	env.RegisterDelayedCallback(list("a"), time.Second)
	env.RegisterDelayedCallback(list("b"), 30*time.Minute)
	env.ExecuteWorkflow(Inventory, InventoryInput{Host: testHost, Idle: time.Hour})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError(), "an idle inventory ends by itself")
	require.Equal(t, []activities.VMList{vms, vms}, got, "two listings, one workflow")
	env.AssertExpectations(t)
}

// Asked for crash-consistency, a running VM's backup skips the extension.
func TestBackupRunningVMCrashConsistentSkipsExtension(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerRunning), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	m.transferOK(env)
	never(env, hostAct.EnsureExtension)
	in := backupInput()
	in.Consistency = platform.CrashConsistent
	env.ExecuteWorkflow(BackupVM, in)
	require.NoError(t, env.GetWorkflowError())
	assertNotCalled(t, env, "EnsureExtension")
	require.Equal(t, platform.CrashConsistent, m.snap.all()[0].Consistency)
}

func TestBackupBadConsistency(t *testing.T) {
	env := newEnv(t)
	never(env, hostAct.DescribeVM)
	in := backupInput()
	in.Consistency = "very-consistent"
	env.ExecuteWorkflow(BackupVM, in)
	app := requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeBadRequest)
	require.Contains(t, app.Message(), `consistency "very-consistent"`)
	assertNotCalled(t, env, "DescribeVM")
}

// The job limit is enforced inside the workflow: a backup that outlives it
// is stopped with JobLimit and its snapshot is still deleted (the server's
// execution timeout would end it without cleanup).
func TestBackupJobLimitCleansUp(t *testing.T) {
	env := newEnv(t)
	m := mockBackup(env, testVMWith(platform.PowerStopped), activities.PrepareBackupResult{Vault: testPin}, platform.CrashConsistent)
	never(env, hostAct.EnsureExtension)
	never(env, vaultAct.SaveRecoveryPoint)
	env.OnActivity(hostAct.TransferDisk, mock.Anything, mock.Anything).After(3 * time.Hour).Return(m.transfer)
	in := backupInput()
	in.Limit = time.Hour
	env.ExecuteWorkflow(BackupVM, in)
	require.True(t, env.IsWorkflowCompleted())
	app := requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeJobLimit)
	require.True(t, app.NonRetryable())
	require.Contains(t, app.Message(), "did not finish within its limit of 1h0m0s")
	require.Contains(t, app.Message(), "on host "+in.Host)
	// A cancel in the chain makes the SDK close the job as cancelled,
	// without this reason (what a real server showed: "canceled").
	var canceled *temporal.CanceledError
	require.False(t, errors.As(env.GetWorkflowError(), &canceled), "the limit's error carries a cancel: %v", env.GetWorkflowError())
	require.Len(t, m.del.all(), 1, "the snapshot is deleted when the limit passes")
	assertNotCalled(t, env, "SaveRecoveryPoint")
	require.Equal(t, PhaseFailed, queryProgress(t, env).Phase)
}
