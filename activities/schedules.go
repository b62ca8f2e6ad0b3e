package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// ScheduleRequest is a Temporal Schedule as a workflow can hand it to an
// activity: everything in plain data (the action's workflow by name, its
// arguments as JSON, its search attributes as keyword values).
type ScheduleRequest struct {
	ID            string                        `json:"id"`
	Spec          client.ScheduleSpec           `json:"spec"`
	Overlap       enumspb.ScheduleOverlapPolicy `json:"overlap"`
	CatchupWindow time.Duration                 `json:"catchup_window,omitempty"`
	Note          string                        `json:"note,omitempty"`
	// The action: start Workflow (a registered name) as WorkflowID on
	// TaskQueue with Args.
	Workflow                 string            `json:"workflow"`
	WorkflowID               string            `json:"workflow_id"`
	TaskQueue                string            `json:"task_queue"`
	Args                     []json.RawMessage `json:"args,omitempty"`
	WorkflowExecutionTimeout time.Duration     `json:"workflow_execution_timeout,omitempty"`
	SearchAttributes         map[string]string `json:"search_attributes,omitempty"`
	Summary                  string            `json:"summary,omitempty"`
	// Existing: the schedule most likely exists (a policy update), so it is
	// updated first and created only if missing. NoNextRun skips reading
	// the next run time back. Both save calls to the server.
	Existing  bool `json:"existing,omitempty"`
	NoNextRun bool `json:"no_next_run,omitempty"`
}

// options turns the request into the SDK's schedule options.
func (r ScheduleRequest) options() client.ScheduleOptions {
	args := make([]any, len(r.Args))
	for i, a := range r.Args {
		args[i] = a // sent as the JSON it is
	}
	var attrs []temporal.SearchAttributeUpdate
	for k, v := range r.SearchAttributes {
		attrs = append(attrs, temporal.NewSearchAttributeKeyKeyword(k).ValueSet(v))
	}
	return client.ScheduleOptions{
		ID: r.ID, Spec: r.Spec, Overlap: r.Overlap, CatchupWindow: r.CatchupWindow, Note: r.Note,
		Action: &client.ScheduleWorkflowAction{
			ID: r.WorkflowID, Workflow: r.Workflow, Args: args, TaskQueue: r.TaskQueue,
			WorkflowExecutionTimeout: r.WorkflowExecutionTimeout,
			TypedSearchAttributes:    temporal.NewSearchAttributes(attrs...),
			StaticSummary:            r.Summary,
		},
	}
}

// ScheduleResult is a schedule as written.
type ScheduleResult struct {
	ID      string    `json:"id"`
	Created bool      `json:"created,omitempty"`
	NextRun time.Time `json:"next_run,omitzero"`
}

// UpsertSchedule creates the schedule, or updates its spec, action,
// overlap and catch-up window in place (a paused schedule stays paused).
// Run again it writes the same, so retries are safe.
func (a *ProtectionActivities) UpsertSchedule(ctx context.Context, r ScheduleRequest) (ScheduleResult, error) {
	res := ScheduleResult{ID: r.ID}
	opts := r.options()
	h := a.Schedules.GetHandle(ctx, opts.ID)
	var err error
	var nf *serviceerror.NotFound
	if r.Existing {
		if err = updateSchedule(ctx, h, opts); errors.As(err, &nf) {
			h, err = a.Schedules.Create(ctx, opts)
			res.Created = err == nil
		}
	} else {
		if h, err = a.Schedules.Create(ctx, opts); errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			h = a.Schedules.GetHandle(ctx, opts.ID)
			err = updateSchedule(ctx, h, opts)
		} else {
			res.Created = err == nil
		}
	}
	if err != nil {
		return res, fmt.Errorf("write schedule %s: %w", opts.ID, err)
	}
	if r.NoNextRun {
		return res, nil
	}
	if d, err := h.Describe(ctx); err == nil && len(d.Info.NextActionTimes) > 0 {
		res.NextRun = d.Info.NextActionTimes[0]
	}
	return res, nil
}

// updateSchedule sets the schedule's spec, action, overlap and catch-up
// window in place; its state (paused or not) stays.
func updateSchedule(ctx context.Context, h client.ScheduleHandle, opts client.ScheduleOptions) error {
	return h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		s := u.Description.Schedule
		s.Spec, s.Action = &opts.Spec, opts.Action
		if s.Policy == nil {
			s.Policy = &client.SchedulePolicies{}
		}
		s.Policy.Overlap = opts.Overlap
		if opts.CatchupWindow > 0 {
			s.Policy.CatchupWindow = opts.CatchupWindow
		}
		return &client.ScheduleUpdate{Schedule: &s}, nil
	}})
}

// DeleteScheduleResult says whether there was a schedule to delete.
type DeleteScheduleResult struct {
	Existed bool `json:"existed"`
}

// DeleteSchedule deletes the schedule id; one that does not exist is not
// an error (Existed false), so a retry after a lost reply is too.
func (a *ProtectionActivities) DeleteSchedule(ctx context.Context, id string) (DeleteScheduleResult, error) {
	err := a.Schedules.GetHandle(ctx, id).Delete(ctx)
	var nf *serviceerror.NotFound
	switch {
	case err == nil:
		return DeleteScheduleResult{Existed: true}, nil
	case errors.As(err, &nf):
		return DeleteScheduleResult{}, nil
	default:
		return DeleteScheduleResult{}, fmt.Errorf("delete schedule %s: %w", id, err)
	}
}
