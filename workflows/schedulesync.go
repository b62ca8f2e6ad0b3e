package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
)

// SyncScheduleInput writes or deletes one of the vault's own schedules
// (vault-check, retention): Schedule to create or update it, else Delete
// names the schedule to delete.
type SyncScheduleInput struct {
	Schedule    *activities.ScheduleRequest `json:"schedule,omitempty"`
	Delete      string                      `json:"delete,omitempty"`
	RequestedBy string                      `json:"requested_by,omitempty"`
}

// SyncScheduleResult says what was done: created, updated or deleted, or
// (Missing) that there was nothing to delete.
type SyncScheduleResult struct {
	ID      string `json:"id"`
	Verb    string `json:"verb"`
	Missing bool   `json:"missing,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// SyncSchedule reconciles one vault-level schedule with what the operator
// asked for, retried by Temporal. One runs per schedule at a time.
func SyncSchedule(ctx workflow.Context, in SyncScheduleInput) (SyncScheduleResult, error) {
	if in.Schedule == nil {
		res := SyncScheduleResult{ID: in.Delete, Verb: "deleted"}
		if in.Delete == "" {
			return res, badRequest("sync schedule: neither a schedule nor one to delete")
		}
		var del activities.DeleteScheduleResult
		err := workflow.ExecuteActivity(scheduleOptions(ctx, "delete schedule "+in.Delete), protAct.DeleteSchedule, in.Delete).Get(ctx, &del)
		res.Missing = !del.Existed
		return res, err
	}
	req := *in.Schedule
	res := SyncScheduleResult{ID: req.ID, Verb: "updated"}
	if len(req.Spec.Calendars) > 0 {
		res.Comment = req.Spec.Calendars[0].Comment
	}
	var sr activities.ScheduleResult
	if err := workflow.ExecuteActivity(scheduleOptions(ctx, "schedule "+req.ID), protAct.UpsertSchedule, req).Get(ctx, &sr); err != nil {
		return res, err
	}
	if sr.Created {
		res.Verb = "created"
	}
	return res, nil
}

// SyncScheduleWorkflowID is the id of the changes of schedule id.
func SyncScheduleWorkflowID(id string) string { return "schedule-" + id }

// SyncScheduleStartOptions start a change of a vault-level schedule.
func SyncScheduleStartOptions(taskQueue string, in SyncScheduleInput) client.StartWorkflowOptions {
	id, what := in.Delete, "delete"
	if in.Schedule != nil {
		id, what = in.Schedule.ID, "write"
	}
	return controlStartOptions(SyncScheduleWorkflowID(id), taskQueue, fmt.Sprintf("%s schedule %s%s", what, id, requestedBy(in.RequestedBy)),
		10*time.Minute, temporal.SearchAttributes{})
}

// CheckScheduleRequest is the vault-check schedule as an activity takes it.
func CheckScheduleRequest(taskQueue string, hour, minute int, tz string, in CheckVaultInput) (activities.ScheduleRequest, error) {
	return ScheduleRequestOf(CheckScheduleFor(taskQueue, hour, minute, tz, in), checkVaultName)
}

// RetentionScheduleRequest is the retention schedule as an activity takes it.
func RetentionScheduleRequest(taskQueue string, hour, minute int, tz string, in ApplyRetentionInput) (activities.ScheduleRequest, error) {
	return ScheduleRequestOf(RetentionScheduleFor(taskQueue, hour, minute, tz, in), applyRetentionName)
}
