package workflows

import (
	"encoding/json"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/policy"
)

// protAct: the protect and policy workflows call these activities.
var protAct *activities.ProtectionActivities

// ErrTypeScheduleNotWritten: the record is written, the schedule is not
// (after retries); protect again writes it.
const ErrTypeScheduleNotWritten = "ScheduleNotWritten"

// ProtectionWorkflowID is the id of the protect or unprotect of a VM: one
// id for both, so two changes of one VM run one after the other.
func ProtectionWorkflowID(vm string) string { return "protection-" + vm }

// ProtectInput asks to protect a VM with a policy, as 'vmvault protect' does.
type ProtectInput struct {
	VM     string `json:"vm"`
	Policy string `json:"policy"`
	// Host owns the VM; a protected VM keeps its host unless HostGiven.
	Host      string `json:"host"`
	HostGiven bool   `json:"host_given,omitempty"`
	// MaxProtectedVMs is the vault's limit (VMVAULT_MAX_PROTECTED_VMS).
	MaxProtectedVMs int `json:"max_protected_vms"`
	// TaskQueue, BackupTimeout and HeartbeatTimeout go into the schedule's runs.
	TaskQueue        string        `json:"task_queue"`
	BackupTimeout    time.Duration `json:"backup_timeout,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// RequestedBy is who asked (the OS user of the CLI).
	RequestedBy string `json:"requested_by,omitempty"`
}

// ScheduleState is a protected VM's schedule as written.
type ScheduleState struct {
	VM       string    `json:"vm"`
	Host     string    `json:"host"`
	Policy   string    `json:"policy"`
	Schedule string    `json:"schedule"`
	Calendar string    `json:"calendar"`
	NextRun  time.Time `json:"next_run,omitzero"`
}

// ProtectResult is the VM's schedule and the policy's time zone.
type ProtectResult struct {
	Schedule ScheduleState `json:"schedule"`
	TimeZone string        `json:"time_zone"`
}

// Protect writes the VM's protection record (the truth: policy, host, and
// the vault's limit of protected VMs, checked again after the write so two
// protects of different VMs at once cannot pass it together), then creates
// or updates its Temporal Schedule protect-<vm>. Refusals are
// non-retryable errors with a type; a schedule that cannot be written
// after retries fails the job with ScheduleNotWritten, the record kept.
func Protect(ctx workflow.Context, in ProtectInput) (ProtectResult, error) {
	var res ProtectResult
	if in.VM == "" || in.MaxProtectedVMs <= 0 {
		return res, badRequest("protect: want a vm and a limit of protected vms, got vm %q, limit %d", in.VM, in.MaxProtectedVMs)
	}
	var w activities.WriteProtectionResult
	err := workflow.ExecuteActivity(withSummary(quickOptions(ctx), "record of vm "+in.VM), protAct.WriteProtection,
		activities.WriteProtectionInput{VM: in.VM, Policy: in.Policy, Host: in.Host, HostGiven: in.HostGiven,
			Since: workflow.Now(ctx).UTC(), Max: in.MaxProtectedVMs}).Get(ctx, &w)
	if err != nil {
		return res, err
	}
	p, pr := w.Policy, w.Protection
	res.TimeZone = p.Schedule.TimeZone
	res.Schedule = ScheduleState{VM: pr.VM, Host: pr.Host, Policy: p.Name, Schedule: ProtectScheduleID(pr.VM)}
	req, cal, err := protectSchedule(p, pr, in.TaskQueue, in.BackupTimeout, in.HeartbeatTimeout)
	if err != nil {
		return res, err
	}
	res.Schedule.Calendar = cal.String()
	var sr activities.ScheduleResult
	if err := workflow.ExecuteActivity(scheduleOptions(ctx, "schedule "+req.ID), protAct.UpsertSchedule, req).Get(ctx, &sr); err != nil {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("vm %s is protected by policy %s in the vault, but its schedule is not written (run protect again): %s", pr.VM, p.Name, rootMessage(err)),
			ErrTypeScheduleNotWritten, err)
	}
	res.Schedule.NextRun = sr.NextRun
	return res, nil
}

// protectSchedule is the schedule request of a VM protected by p.
func protectSchedule(p policy.Policy, pr policy.Protection, taskQueue string, backup, heartbeat time.Duration) (activities.ScheduleRequest, policy.Calendar, error) {
	cal, err := p.CalendarFor(pr.VM)
	if err != nil {
		return activities.ScheduleRequest{}, cal, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidPolicy, nil)
	}
	in := ScheduledBackupInput{VM: pr.VM, Host: pr.Host, BackupTimeout: backup, HeartbeatTimeout: heartbeat}
	opts, err := ScheduleFor(p, in, taskQueue)
	if err != nil {
		return activities.ScheduleRequest{}, cal, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidPolicy, nil)
	}
	req, err := ScheduleRequestOf(opts, scheduledBackupName)
	return req, cal, err
}

// Names the worker registers the scheduled workflows by (their function
// names; TestScheduledWorkflowNames checks).
const (
	scheduledBackupName = "ScheduledBackup"
	applyRetentionName  = "ApplyRetention"
	checkVaultName      = "CheckVault"
)

// ScheduleRequestOf turns schedule options (as ScheduleFor,
// CheckScheduleFor and RetentionScheduleFor build them) into plain data an
// activity can take: the action's workflow by its registered name, its
// arguments as JSON, its VM and kind search attributes as values.
func ScheduleRequestOf(opts client.ScheduleOptions, workflowName string) (activities.ScheduleRequest, error) {
	act, ok := opts.Action.(*client.ScheduleWorkflowAction)
	if !ok {
		return activities.ScheduleRequest{}, badRequest("schedule %s: not a workflow action", opts.ID)
	}
	req := activities.ScheduleRequest{
		ID: opts.ID, Spec: opts.Spec, Overlap: opts.Overlap, CatchupWindow: opts.CatchupWindow, Note: opts.Note,
		Workflow: workflowName, WorkflowID: act.ID, TaskQueue: act.TaskQueue,
		WorkflowExecutionTimeout: act.WorkflowExecutionTimeout, Summary: act.StaticSummary,
	}
	for _, a := range act.Args {
		// Plain structs marshal the same every time; workflowcheck sees
		// only the reflection and the GC behind encoding/json.
		b, err := json.Marshal(a) //workflowcheck:ignore
		if err != nil {
			return req, badRequest("schedule %s: argument: %v", opts.ID, err)
		}
		req.Args = append(req.Args, b)
	}
	for _, k := range []temporal.SearchAttributeKeyKeyword{AttrVM, AttrKind} {
		if v, ok := act.TypedSearchAttributes.GetKeyword(k); ok {
			if req.SearchAttributes == nil {
				req.SearchAttributes = map[string]string{}
			}
			req.SearchAttributes[k.GetName()] = v
		}
	}
	return req, nil
}

// scheduleOptions: one schedule change, retried a few times (Temporal
// briefly unavailable), each try short.
func scheduleOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 20 * time.Second, MaximumAttempts: 6,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// UnprotectInput asks to stop protecting a VM, as 'vmvault unprotect' does.
type UnprotectInput struct {
	VM string `json:"vm"`
	// DeleteData soft-deletes the VM's points for KeepDeletedFor.
	DeleteData     bool          `json:"delete_data,omitempty"`
	KeepDeletedFor time.Duration `json:"keep_deleted_for,omitempty"`
	RequestedBy    string        `json:"requested_by,omitempty"`
}

// UnprotectResult is what unprotect did.
type UnprotectResult struct {
	VM             string    `json:"vm"`
	Schedule       string    `json:"schedule"`
	RecoveryPoints int       `json:"recovery_points"`
	SoftDeleted    bool      `json:"soft_deleted,omitempty"`
	PurgeAfter     time.Time `json:"purge_after,omitzero"`
	Warnings       []string  `json:"warnings,omitempty"`
}

// Unprotect deletes the VM's schedule, then its protection record (a
// record without a schedule still shows in 'protected'; a schedule without
// a record would back up unseen), and keeps or soft-deletes its recovery
// points. An immutable vault refuses --delete-data before anything changes.
func Unprotect(ctx workflow.Context, in UnprotectInput) (UnprotectResult, error) {
	res := UnprotectResult{VM: in.VM, Schedule: ProtectScheduleID(in.VM)}
	if in.VM == "" {
		return res, badRequest("unprotect: no vm named")
	}
	now := workflow.Now(ctx)
	actx := centralOptions(ctx)
	var prep activities.PrepareUnprotectResult
	if err := workflow.ExecuteActivity(actx, protAct.PrepareUnprotect, activities.PrepareUnprotectInput{VM: in.VM, DeleteData: in.DeleteData, Now: now}).Get(ctx, &prep); err != nil {
		return res, err
	}
	var del activities.DeleteScheduleResult
	if err := workflow.ExecuteActivity(scheduleOptions(ctx, "delete schedule "+res.Schedule), protAct.DeleteSchedule, res.Schedule).Get(ctx, &del); err != nil {
		return res, err
	}
	if !del.Existed && !prep.Protected {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("vm %s is not protected in %s (see 'vmvault protected')", in.VM, prep.Location), activities.ErrTypeNotProtected, nil)
	}
	if prep.Protected {
		if err := workflow.ExecuteActivity(actx, protAct.DeleteProtection, in.VM).Get(ctx, nil); err != nil {
			return res, err
		}
	}
	var rel activities.ReleaseRecoveryPointsResult
	err := workflow.ExecuteActivity(actx, protAct.ReleaseRecoveryPoints, activities.ReleaseRecoveryPointsInput{
		VM: in.VM, Delete: in.DeleteData, Now: now, KeepDeletedFor: in.KeepDeletedFor}).Get(ctx, &rel)
	if err != nil {
		return res, err
	}
	res.RecoveryPoints, res.SoftDeleted, res.PurgeAfter, res.Warnings = rel.Count, in.DeleteData, rel.PurgeAfter, rel.Warnings
	return res, nil
}

// ProtectStartOptions start the protect of a VM. It shares its id with
// unprotect: a second change of the same VM while one runs is refused by
// the server (the CLI waits for the first and starts again).
func ProtectStartOptions(taskQueue string, in ProtectInput) client.StartWorkflowOptions {
	return protectionStartOptions(taskQueue, in.VM,
		fmt.Sprintf("protect vm %s with policy %s%s", in.VM, in.Policy, requestedBy(in.RequestedBy)))
}

// UnprotectStartOptions start the unprotect of a VM (see ProtectStartOptions).
func UnprotectStartOptions(taskQueue string, in UnprotectInput) client.StartWorkflowOptions {
	data := "keep its recovery points"
	if in.DeleteData {
		data = "soft-delete its recovery points"
	}
	return protectionStartOptions(taskQueue, in.VM, fmt.Sprintf("unprotect vm %s, %s%s", in.VM, data, requestedBy(in.RequestedBy)))
}

func protectionStartOptions(taskQueue, vm, summary string) client.StartWorkflowOptions {
	return controlStartOptions(ProtectionWorkflowID(vm), taskQueue, summary, time.Hour,
		temporal.NewSearchAttributes(AttrVM.ValueSet(vm)))
}
