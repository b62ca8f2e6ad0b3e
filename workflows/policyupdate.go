package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/policy"
)

// PolicyWorkflowID is the id of an update of the policy: two updates of
// one policy run one after the other.
func PolicyWorkflowID(name string) string { return "policy-" + name }

// Batching of a policy update: schedules changed at once, and VMs per run
// before the workflow continues as new (so its history stays small).
const (
	defaultPolicyBatch = 50
	defaultPolicyRun   = 500
)

// UpdatePolicyInput is the policy as it is to be, and where an update
// that continued as new stands.
type UpdatePolicyInput struct {
	Policy      policy.Policy `json:"policy"`
	RequestedBy string        `json:"requested_by,omitempty"`
	// TaskQueue, BackupTimeout and HeartbeatTimeout go into the schedules' runs.
	TaskQueue        string        `json:"task_queue"`
	BackupTimeout    time.Duration `json:"backup_timeout,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Batch (0: 50) schedules at once; PerRun (0: 500) VMs per run.
	Batch  int `json:"batch,omitempty"`
	PerRun int `json:"per_run,omitempty"`
	// Carried over by continue-as-new: the record is written, and the
	// VMs up to After (by name) are done.
	Saved bool                 `json:"saved,omitempty"`
	After string               `json:"after,omitempty"`
	Done  UpdatePolicyProgress `json:"done"`
}

// ScheduleFailure is a VM whose schedule could not be updated.
type ScheduleFailure struct {
	VM    string `json:"vm"`
	Error string `json:"error"`
}

// UpdatePolicyProgress is how far a policy update is, and its result.
type UpdatePolicyProgress struct {
	Policy      string            `json:"policy"`
	Total       int               `json:"total"`
	Rescheduled []string          `json:"rescheduled"`
	Failed      []ScheduleFailure `json:"failed,omitempty"`
}

// UpdatePolicyResult is the policy written and what happened to the
// schedule of every VM it protects.
type UpdatePolicyResult struct {
	Policy policy.Policy `json:"policy"`
	UpdatePolicyProgress
}

// UpdatePolicy writes the policy record (an immutable vault refuses
// shorter retention; nothing changes then), then updates the schedule of
// every VM the policy protects, Batch at a time, each an activity with
// retries. A VM whose schedule still fails is reported in the result, not
// dropped; 'vmvault protect VM --policy NAME' retries it. After PerRun VMs
// (or when Temporal suggests it) it continues as new where it stopped.
// The query "progress" answers with UpdatePolicyProgress.
func UpdatePolicy(ctx workflow.Context, in UpdatePolicyInput) (UpdatePolicyResult, error) {
	p := in.Policy
	in.Done.Policy = p.Name
	res := UpdatePolicyResult{Policy: p}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (UpdatePolicyProgress, error) { return in.Done, nil }); err != nil {
		return res, err
	}
	if err := p.Validate(); err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidPolicy, nil)
	}
	actx := centralOptions(ctx)
	if !in.Saved {
		if err := workflow.ExecuteActivity(withSummary(actx, "record of policy "+p.Name), protAct.SavePolicy, p).Get(ctx, nil); err != nil {
			return res, err
		}
		in.Saved = true
	}
	var prots []policy.Protection
	if err := workflow.ExecuteActivity(actx, protAct.ListProtectedBy, p.Name).Get(ctx, &prots); err != nil {
		return res, err
	}
	todo := prots[:0:0]
	for _, pr := range prots {
		if pr.VM > in.After {
			todo = append(todo, pr)
		}
	}
	if in.After == "" {
		in.Done.Total = len(todo)
	}
	batch, perRun := orDefault(in.Batch, defaultPolicyBatch), orDefault(in.PerRun, defaultPolicyRun)
	for done := 0; len(todo) > 0; {
		n := min(batch, len(todo))
		rescheduleBatch(ctx, &in, todo[:n])
		in.After, todo, done = todo[n-1].VM, todo[n:], done+n
		if len(todo) > 0 && (done >= perRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()) {
			return res, workflow.NewContinueAsNewError(ctx, UpdatePolicy, in)
		}
	}
	res.UpdatePolicyProgress = in.Done
	return res, nil
}

// rescheduleBatch updates the schedules of prs at once and records each
// outcome in in.Done.
func rescheduleBatch(ctx workflow.Context, in *UpdatePolicyInput, prs []policy.Protection) {
	futures := make([]workflow.Future, len(prs))
	errs := make([]error, len(prs))
	for i, pr := range prs {
		req, _, err := protectSchedule(in.Policy, pr, in.TaskQueue, in.BackupTimeout, in.HeartbeatTimeout)
		if err != nil {
			errs[i] = err
			continue
		}
		req.Existing, req.NoNextRun = true, true // protected VMs have their schedules
		futures[i] = workflow.ExecuteActivity(scheduleOptions(ctx, "schedule "+req.ID), protAct.UpsertSchedule, req)
	}
	for i, pr := range prs {
		err := errs[i]
		if err == nil {
			err = futures[i].Get(ctx, nil)
		}
		if err != nil {
			in.Done.Failed = append(in.Done.Failed, ScheduleFailure{VM: pr.VM, Error: rootMessage(err)})
			continue
		}
		in.Done.Rescheduled = append(in.Done.Rescheduled, pr.VM)
	}
}

func orDefault(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// UpdatePolicyStartOptions start the update of a policy; a second update
// of the same policy while one runs is refused by the server (the CLI
// waits for the first and starts again).
func UpdatePolicyStartOptions(taskQueue string, in UpdatePolicyInput) client.StartWorkflowOptions {
	return controlStartOptions(PolicyWorkflowID(in.Policy.Name), taskQueue,
		fmt.Sprintf("update policy %s and reschedule its vms%s", in.Policy.Name, requestedBy(in.RequestedBy)),
		24*time.Hour, temporal.SearchAttributes{})
}

// controlStartOptions: a change of the control plane, one per id at a time.
func controlStartOptions(id, taskQueue, summary string, timeout time.Duration, attrs temporal.SearchAttributes) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: id, TaskQueue: taskQueue, WorkflowExecutionTimeout: timeout,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    attrs,
		StaticSummary:                            summary,
	}
}

// requestedBy names who asked, for summaries.
func requestedBy(who string) string {
	if who == "" {
		return ""
	}
	return fmt.Sprintf(" (asked by %s)", who)
}
