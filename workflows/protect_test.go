package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/policy"
)

func newProtectEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	env := newEnv(t)
	env.RegisterActivity(&activities.ProtectionActivities{})
	return env
}

func goldPolicy() policy.Policy {
	p := policy.Default()
	p.Name, p.Schedule.TimeZone = "gold", "Europe/Berlin"
	return p
}

func TestProtectWritesRecordThenSchedule(t *testing.T) {
	env := newProtectEnv(t)
	next := time.Date(2026, 12, 5, 22, 30, 0, 0, time.UTC)
	var reqs recorder[activities.ScheduleRequest]
	env.OnActivity(protAct.WriteProtection, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.WriteProtectionInput) (activities.WriteProtectionResult, error) {
			require.Equal(t, testVM, in.VM)
			require.Equal(t, 3, in.Max)
			require.False(t, in.Since.IsZero())
			return activities.WriteProtectionResult{Policy: goldPolicy(), Protection: policy.Protection{VM: in.VM, Host: testHost, Policy: "gold", Since: in.Since}}, nil
		})
	env.OnActivity(protAct.UpsertSchedule, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.ScheduleRequest) (activities.ScheduleResult, error) {
			reqs.add(r)
			return activities.ScheduleResult{ID: r.ID, Created: true, NextRun: next}, nil
		})
	env.ExecuteWorkflow(Protect, ProtectInput{VM: testVM, Policy: "gold", Host: testHost, MaxProtectedVMs: 3, TaskQueue: "vmvault", RequestedBy: "alice"})
	require.NoError(t, env.GetWorkflowError())
	var res ProtectResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, "protect-"+testVM, res.Schedule.Schedule)
	require.Equal(t, "Europe/Berlin", res.TimeZone)
	require.Equal(t, next, res.Schedule.NextRun)
	require.NotEmpty(t, res.Schedule.Calendar)

	r := reqs.all()
	require.Len(t, r, 1)
	require.Equal(t, scheduledBackupName, r[0].Workflow)
	require.Equal(t, ScheduledBackupWorkflowID(testVM), r[0].WorkflowID)
	require.Equal(t, "Europe/Berlin", r[0].Spec.TimeZoneName)
	require.Equal(t, testVM, r[0].SearchAttributes[AttrVM.GetName()])
	require.Len(t, r[0].Args, 1)
	var in ScheduledBackupInput
	require.NoError(t, json.Unmarshal(r[0].Args[0], &in))
	require.Equal(t, ScheduledBackupInput{VM: testVM, Host: testHost, Policy: "gold", Consistency: platform.AppConsistent}, in)
}

func TestProtectRefusalWritesNoSchedule(t *testing.T) {
	env := newProtectEnv(t)
	env.OnActivity(protAct.WriteProtection, mock.Anything, mock.Anything).Return(activities.WriteProtectionResult{},
		temporal.NewNonRetryableApplicationError("vault x already protects 3 vms, the limit", activities.ErrTypeLimitExceeded, nil))
	never(env, protAct.UpsertSchedule)
	env.ExecuteWorkflow(Protect, ProtectInput{VM: testVM, Policy: "gold", MaxProtectedVMs: 3})
	app := requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeLimitExceeded)
	require.Contains(t, app.Message(), "already protects 3 vms")
	assertNotCalled(t, env, "UpsertSchedule")
}

func TestProtectScheduleNotWritten(t *testing.T) {
	env := newProtectEnv(t)
	env.OnActivity(protAct.WriteProtection, mock.Anything, mock.Anything).Return(
		activities.WriteProtectionResult{Policy: goldPolicy(), Protection: policy.Protection{VM: testVM, Host: testHost, Policy: "gold"}}, nil)
	env.OnActivity(protAct.UpsertSchedule, mock.Anything, mock.Anything).Return(activities.ScheduleResult{}, errors.New("temporal unavailable"))
	env.ExecuteWorkflow(Protect, ProtectInput{VM: testVM, Policy: "gold", MaxProtectedVMs: 1000})
	app := requireAppErrType(t, env.GetWorkflowError(), ErrTypeScheduleNotWritten)
	require.Contains(t, app.Message(), "vm web1 is protected by policy gold in the vault, but its schedule is not written (run protect again): temporal unavailable")
	env.AssertActivityNumberOfCalls(t, "UpsertSchedule", 6) // retried
}

func TestUnprotect(t *testing.T) {
	env := newProtectEnv(t)
	env.OnActivity(protAct.PrepareUnprotect, mock.Anything, mock.Anything).Return(activities.PrepareUnprotectResult{Protected: true}, nil)
	env.OnActivity(protAct.DeleteSchedule, mock.Anything, "protect-"+testVM).Return(activities.DeleteScheduleResult{Existed: true}, nil)
	env.OnActivity(protAct.DeleteProtection, mock.Anything, testVM).Return(nil)
	env.OnActivity(protAct.ReleaseRecoveryPoints, mock.Anything, mock.Anything).Return(activities.ReleaseRecoveryPointsResult{Count: 2}, nil)
	env.ExecuteWorkflow(Unprotect, UnprotectInput{VM: testVM})
	var res UnprotectResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, UnprotectResult{VM: testVM, Schedule: "protect-" + testVM, RecoveryPoints: 2}, res)
}

func TestUnprotectNotProtected(t *testing.T) {
	env := newProtectEnv(t)
	env.OnActivity(protAct.PrepareUnprotect, mock.Anything, mock.Anything).Return(activities.PrepareUnprotectResult{Location: "file:///v"}, nil)
	env.OnActivity(protAct.DeleteSchedule, mock.Anything, mock.Anything).Return(activities.DeleteScheduleResult{}, nil)
	never(env, protAct.DeleteProtection)
	never(env, protAct.ReleaseRecoveryPoints)
	env.ExecuteWorkflow(Unprotect, UnprotectInput{VM: testVM})
	app := requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeNotProtected)
	require.Equal(t, "vm web1 is not protected in file:///v (see 'vmvault protected')", app.Message())
}

func protections(n int) []policy.Protection {
	out := make([]policy.Protection, n)
	for i := range out {
		out[i] = policy.Protection{VM: fmt.Sprintf("vm%03d", i), Host: testHost, Policy: "gold"}
	}
	return out
}

// A policy update over more VMs than one run takes continues as new
// where it stopped; the record is written once.
func TestUpdatePolicyContinuesAsNew(t *testing.T) {
	env := newProtectEnv(t)
	env.OnActivity(protAct.SavePolicy, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(protAct.ListProtectedBy, mock.Anything, "gold").Return(protections(7), nil)
	var reqs recorder[string]
	env.OnActivity(protAct.UpsertSchedule, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.ScheduleRequest) (activities.ScheduleResult, error) {
			if !r.Existing || !r.NoNextRun {
				return activities.ScheduleResult{}, errors.New("a policy update updates schedules in place, without reading them back")
			}
			reqs.add(r.ID)
			return activities.ScheduleResult{ID: r.ID}, nil
		})
	env.ExecuteWorkflow(UpdatePolicy, UpdatePolicyInput{Policy: goldPolicy(), Batch: 2, PerRun: 4})
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want continue-as-new, got %v", env.GetWorkflowError())
	var next UpdatePolicyInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.True(t, next.Saved)
	require.Equal(t, "vm003", next.After)
	require.Equal(t, 7, next.Done.Total)
	require.Equal(t, []string{"vm000", "vm001", "vm002", "vm003"}, next.Done.Rescheduled)
	require.Len(t, reqs.all(), 4)

	// The next run does the rest and does not write the record again.
	env = newProtectEnv(t)
	never(env, protAct.SavePolicy)
	env.OnActivity(protAct.ListProtectedBy, mock.Anything, "gold").Return(protections(7), nil)
	env.OnActivity(protAct.UpsertSchedule, mock.Anything, mock.Anything).Return(activities.ScheduleResult{}, nil)
	env.ExecuteWorkflow(UpdatePolicy, next)
	var res UpdatePolicyResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 7, res.Total)
	require.Len(t, res.Rescheduled, 7)
	require.Empty(t, res.Failed)
	assertNotCalled(t, env, "SavePolicy")
	env.AssertActivityNumberOfCalls(t, "UpsertSchedule", 3)
}

// A VM whose schedule keeps failing is reported at the end; the others
// are updated.
func TestUpdatePolicyReportsFailedVMs(t *testing.T) {
	env := newProtectEnv(t)
	env.OnActivity(protAct.SavePolicy, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(protAct.ListProtectedBy, mock.Anything, "gold").Return(protections(5), nil)
	env.OnActivity(protAct.UpsertSchedule, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.ScheduleRequest) (activities.ScheduleResult, error) {
			if r.ID == "protect-vm002" {
				return activities.ScheduleResult{}, errors.New("schedule service busy")
			}
			return activities.ScheduleResult{ID: r.ID}, nil
		})
	var progress UpdatePolicyProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryProgress)
		require.NoError(t, err)
		require.NoError(t, v.Get(&progress))
	}, 10*time.Second) // while vm002 is retried
	env.ExecuteWorkflow(UpdatePolicy, UpdatePolicyInput{Policy: goldPolicy(), Batch: 2})
	var res UpdatePolicyResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, []string{"vm000", "vm001", "vm003", "vm004"}, res.Rescheduled)
	require.Len(t, res.Failed, 1)
	require.Equal(t, "vm002", res.Failed[0].VM)
	require.Contains(t, res.Failed[0].Error, "schedule service busy")
	require.Equal(t, 5, progress.Total)
}

func TestUpdatePolicyRefusalChangesNothing(t *testing.T) {
	env := newProtectEnv(t)
	env.OnActivity(protAct.SavePolicy, mock.Anything, mock.Anything).Return(
		temporal.NewNonRetryableApplicationError("policy gold: retention cannot be shortened in an immutable vault (daily 30 -> 10)", activities.ErrTypeImmutable, nil))
	never(env, protAct.ListProtectedBy)
	never(env, protAct.UpsertSchedule)
	env.ExecuteWorkflow(UpdatePolicy, UpdatePolicyInput{Policy: goldPolicy()})
	requireAppErrType(t, env.GetWorkflowError(), activities.ErrTypeImmutable)
	assertNotCalled(t, env, "ListProtectedBy", "UpsertSchedule")
}

func TestSyncSchedule(t *testing.T) {
	env := newProtectEnv(t)
	req, err := CheckScheduleRequest("vmvault", 2, 30, "UTC", CheckVaultInput{})
	require.NoError(t, err)
	require.Equal(t, checkVaultName, req.Workflow)
	env.OnActivity(protAct.UpsertSchedule, mock.Anything, mock.Anything).Return(activities.ScheduleResult{ID: req.ID, Created: true}, nil)
	env.ExecuteWorkflow(SyncSchedule, SyncScheduleInput{Schedule: &req})
	var res SyncScheduleResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, SyncScheduleResult{ID: CheckScheduleID, Verb: "created", Comment: "daily at 02:30 UTC: vault check of metadata and index"}, res)

	env = newProtectEnv(t)
	env.OnActivity(protAct.DeleteSchedule, mock.Anything, RetentionScheduleID).Return(activities.DeleteScheduleResult{}, nil)
	env.ExecuteWorkflow(SyncSchedule, SyncScheduleInput{Delete: RetentionScheduleID})
	require.NoError(t, env.GetWorkflowResult(&res))
	require.True(t, res.Missing)
}

// The names the schedule requests use are the names the worker registers
// the workflows by.
func TestScheduledWorkflowNames(t *testing.T) {
	for name, fn := range map[string]any{scheduledBackupName: ScheduledBackup, applyRetentionName: ApplyRetention, checkVaultName: CheckVault} {
		full := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
		require.True(t, strings.HasSuffix(full, "."+name), "%s is registered as %s", full, name)
	}
	req, err := RetentionScheduleRequest("vmvault", 3, 30, "Europe/Berlin", ApplyRetentionInput{KeepDeletedFor: time.Hour})
	require.NoError(t, err)
	var in ApplyRetentionInput
	require.NoError(t, json.Unmarshal(req.Args[0], &in))
	require.Equal(t, time.Hour, in.KeepDeletedFor)
	require.Equal(t, string(KindRetention), req.SearchAttributes[AttrKind.GetName()])
}
