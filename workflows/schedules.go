package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/infra/policy"
)

// ProtectScheduleID is the id of a protected VM's Temporal Schedule.
func ProtectScheduleID(vm string) string { return "protect-" + vm }

// ScheduledBackupWorkflowID is the id a VM's schedule gives its runs;
// Temporal appends the run's scheduled time.
func ScheduledBackupWorkflowID(vm string) string { return "scheduled-backup-" + vm }

// ScheduleCatchupWindow: a run missed while Temporal was down still starts
// when it comes back within this window; older ones are dropped (Azure
// skips missed backups too).
const ScheduleCatchupWindow = 6 * time.Hour

// ScheduleFor is the Temporal Schedule of a VM protected by p: a calendar
// in p's time zone at the policy's times shifted by the VM's stagger
// offset, whose action runs ScheduledBackup on the central task queue. in
// names the VM and host and carries the timeouts; its Policy and
// Consistency are filled from p. Overlap is skip: a run never queues
// behind a running one.
func ScheduleFor(p policy.Policy, in ScheduledBackupInput, taskQueue string) (client.ScheduleOptions, error) {
	cal, err := p.CalendarFor(in.VM)
	if err != nil {
		return client.ScheduleOptions{}, err
	}
	in.Policy = p.Name
	if in.Consistency, err = p.Consistency.Platform(); err != nil {
		return client.ScheduleOptions{}, fmt.Errorf("policy %s: consistency %w", p.Name, err)
	}
	return client.ScheduleOptions{
		ID:            ProtectScheduleID(in.VM),
		Spec:          ScheduleSpecFor(p, cal),
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: ScheduleCatchupWindow,
		Note:          fmt.Sprintf("vm %s protected by policy %s (vmvault protect)", in.VM, p.Name),
		Action: &client.ScheduleWorkflowAction{
			ID:        ScheduledBackupWorkflowID(in.VM),
			Workflow:  ScheduledBackup,
			Args:      []any{in},
			TaskQueue: taskQueue,
			// The run waits for its backup; give it the backup's limit and a bit.
			WorkflowExecutionTimeout: scheduledTimeout(in.BackupTimeout),
			TypedSearchAttributes:    temporal.NewSearchAttributes(AttrVM.ValueSet(in.VM), AttrKind.ValueSet(string(KindScheduled))),
			StaticSummary:            fmt.Sprintf("scheduled backup of %s (host %s, policy %s): skipped if a backup of it is running", in.VM, in.Host, p.Name),
		},
	}, nil
}

func scheduledTimeout(backup time.Duration) time.Duration {
	if backup <= 0 {
		backup = 24 * time.Hour
	}
	return backup + time.Hour
}

// ScheduleSpecFor turns a VM's calendar under p into a ScheduleSpec in p's
// time zone.
func ScheduleSpecFor(p policy.Policy, cal policy.Calendar) client.ScheduleSpec {
	spec := client.ScheduleCalendarSpec{
		Second:  []client.ScheduleRange{{Start: cal.Second}},
		Minute:  []client.ScheduleRange{{Start: cal.Minute}},
		Comment: fmt.Sprintf("policy %s: %s %s", p.Name, cal, p.Schedule.TimeZone),
	}
	for _, h := range cal.Hours {
		spec.Hour = append(spec.Hour, client.ScheduleRange{Start: h})
	}
	for _, d := range cal.Weekdays {
		spec.DayOfWeek = append(spec.DayOfWeek, client.ScheduleRange{Start: int(d)})
	}
	return client.ScheduleSpec{Calendars: []client.ScheduleCalendarSpec{spec}, TimeZoneName: p.Schedule.TimeZone}
}
