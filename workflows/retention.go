package workflows

import (
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
)

// KindRetention is a retention run (ApplyRetention).
const KindRetention Kind = "retention"

// Phases of a retention run.
const (
	PhaseExpiring Phase = "expiring"
	PhasePurging  Phase = "purging"
)

// RetentionTarget is a VM and the retention rules to apply to it.
type RetentionTarget = activities.RetentionTarget

// ApplyRetentionInput tunes a retention run.
type ApplyRetentionInput struct {
	// KeepDeletedFor is the soft-delete period: points expired now can be
	// undeleted for this long, and soft-deleted points older than this are
	// purged (VMVAULT_SOFT_DELETE_DAYS).
	KeepDeletedFor time.Duration `json:"keep_deleted_for"`
	// DryRun says what would be expired and purged, and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// Targets, when set, are the only VMs worked on, with these rules
	// instead of their policies'. Empty: every protected VM by its policy.
	Targets []RetentionTarget `json:"targets,omitempty"`
}

// RetentionResult is what a retention run did.
type RetentionResult struct {
	Now    time.Time                 `json:"now"`
	DryRun bool                      `json:"dry_run,omitempty"`
	Vault  string                    `json:"vault"`
	VMs    []activities.ExpireResult `json:"vms"`
	// Purged are the soft-deleted points removed for good (their data is
	// left to garbage collection).
	Purged []string `json:"purged,omitempty"`
	// Failed names the VMs whose retention failed (see VMs[].Error).
	Failed []string `json:"failed,omitempty"`
	// Unreadable reports tombstones that could not be read (kept).
	Unreadable string `json:"unreadable,omitempty"`
}

// Expired counts the points expired over all VMs.
func (r RetentionResult) Expired() int {
	n := 0
	for _, vm := range r.VMs {
		n += len(vm.Expired)
	}
	return n
}

// Summary is the one line a run reports.
func (r RetentionResult) Summary() string {
	verb, purged := "soft-deleted", "purged"
	if r.DryRun {
		verb, purged = "would soft-delete", "would purge"
	}
	s := fmt.Sprintf("retention: %d VMs, %s %d expired recovery points, %s %d", len(r.VMs), verb, r.Expired(), purged, len(r.Purged))
	if len(r.Failed) > 0 {
		s += fmt.Sprintf("; failed for %s", strings.Join(r.Failed, ", "))
	}
	return s
}

// ApplyRetention expires recovery points by each protected VM's policy
// (policy.Expire: the newest point of a VM is never expired), soft-deletes
// them, then purges soft-deleted points past their period. Time is the
// workflow's: a scheduled run expires as of when it started. One VM's
// failure does not stop the others; it is reported in the result.
func ApplyRetention(ctx workflow.Context, in ApplyRetentionInput) (res RetentionResult, err error) {
	prog, err := newProgress(ctx, KindRetention, "")
	if err != nil {
		return res, err
	}
	defer func() { prog.fail(err) }()
	if in.KeepDeletedFor <= 0 {
		return res, badRequest("retention: keep deleted for %s: want a positive soft-delete period", in.KeepDeletedFor)
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet(string(KindRetention)))
	res.Now, res.DryRun = workflow.Now(ctx).UTC(), in.DryRun
	// Short vault steps that heartbeat: a step whose worker died is retried
	// after stepHeartbeat, not after its ten-minute start-to-close timeout.
	actx := vaultStepOptions(ctx)

	var targets activities.RetentionTargets
	err = workflow.ExecuteActivity(withSummary(actx, "list protected VMs and their policies"), vaultAct.ListRetentionTargets,
		activities.RetentionTargetsInput{Targets: in.Targets}).Get(ctx, &targets)
	if err != nil {
		return res, err
	}
	res.Vault = targets.Vault.Location
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVault.ValueSet(targets.Vault.Location))

	prog.Phase = PhaseExpiring
	for _, t := range targets.Targets {
		var r activities.ExpireResult
		if t.Problem != "" {
			res.Failed = append(res.Failed, t.VM)
			res.VMs = append(res.VMs, activities.ExpireResult{VM: t.VM, Policy: t.Policy, Error: t.Problem})
			prog.note(t.VM + ": " + t.Problem)
			continue
		}
		err := workflow.ExecuteActivity(withSummary(actx, "expire "+t.VM), vaultAct.ExpireRecoveryPoints, activities.ExpireInput{
			Vault: targets.Vault, Target: t, Now: res.Now, KeepDeletedFor: in.KeepDeletedFor, DryRun: in.DryRun,
		}).Get(ctx, &r)
		if err != nil {
			r = activities.ExpireResult{VM: t.VM, Policy: t.Policy, Error: err.Error()}
			res.Failed = append(res.Failed, t.VM)
			prog.note(fmt.Sprintf("%s: retention failed: %v", t.VM, err))
		} else if len(r.Expired) > 0 {
			prog.note(fmt.Sprintf("%s: kept %d, expired %s", t.VM, r.Kept, strings.Join(r.Expired, " ")))
		}
		if len(r.Immutable) > 0 {
			prog.note(fmt.Sprintf("%s: %d points the policy expired are kept by the immutable vault: %s", t.VM, len(r.Immutable), r.Immutable[0]))
		}
		res.VMs = append(res.VMs, r)
	}

	prog.Phase = PhasePurging
	var purge activities.PurgeResult
	err = workflow.ExecuteActivity(withSummary(actx, "purge soft-deleted points past their period"), vaultAct.PurgeDeleted, activities.PurgeInput{
		Vault: targets.Vault, Now: res.Now, KeepDeletedFor: in.KeepDeletedFor, DryRun: in.DryRun,
	}).Get(ctx, &purge)
	if err != nil {
		return res, err
	}
	res.Purged, res.Unreadable = purge.Purged, purge.Unreadable
	summary := res.Summary()
	workflow.SetCurrentDetails(ctx, summary)
	prog.note(summary)
	prog.Phase = PhaseDone
	return res, nil
}

// RetentionScheduleID is the id of the vault's retention schedule.
const RetentionScheduleID = "retention"

// RetentionScheduleFor is the Temporal Schedule that runs ApplyRetention
// daily at hour:minute in timeZone. Overlap is skip: a run that finds the
// previous one still going is dropped, the next day's catches up.
func RetentionScheduleFor(taskQueue string, hour, minute int, timeZone string, in ApplyRetentionInput) client.ScheduleOptions {
	return client.ScheduleOptions{
		ID: RetentionScheduleID,
		Spec: client.ScheduleSpec{
			Calendars: []client.ScheduleCalendarSpec{{
				Hour: []client.ScheduleRange{{Start: hour}}, Minute: []client.ScheduleRange{{Start: minute}},
				Comment: fmt.Sprintf("retention daily at %02d:%02d %s", hour, minute, timeZone),
			}},
			TimeZoneName: timeZone,
		},
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: 6 * time.Hour,
		Action: &client.ScheduleWorkflowAction{
			ID: RetentionWorkflowID, Workflow: ApplyRetention, Args: []any{in}, TaskQueue: taskQueue,
			TypedSearchAttributes: temporal.NewSearchAttributes(AttrKind.ValueSet(string(KindRetention))),
			StaticSummary:         "retention: expire recovery points by policy, purge soft-deleted points",
		},
	}
}
