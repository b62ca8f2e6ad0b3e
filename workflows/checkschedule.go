package workflows

import (
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// CheckScheduleID is the Temporal Schedule of the vault's scheduled check.
const CheckScheduleID = "vault-check"

// CheckScheduleFor is a Schedule that runs CheckVault daily at hour:minute
// in tz with in (RotateSeed set, so each day's run reads the next share of
// the data). Runs do not overlap: one still running skips the next.
func CheckScheduleFor(taskQueue string, hour, minute int, tz string, in CheckVaultInput) client.ScheduleOptions {
	in.RotateSeed = true
	what := "metadata and index"
	if in.ReadData && in.ReadDataPercent > 0 && in.ReadDataPercent < 100 {
		what = fmt.Sprintf("metadata, index and the next %d%% of the data", in.ReadDataPercent)
	} else if in.ReadData {
		what = "metadata, index and all data"
	}
	return client.ScheduleOptions{
		ID: CheckScheduleID,
		Spec: client.ScheduleSpec{
			Calendars: []client.ScheduleCalendarSpec{{
				Hour: []client.ScheduleRange{{Start: hour}}, Minute: []client.ScheduleRange{{Start: minute}},
				Comment: fmt.Sprintf("daily at %02d:%02d %s: vault check of %s", hour, minute, tz, what),
			}},
			TimeZoneName: tz,
		},
		Action: &client.ScheduleWorkflowAction{
			ID: CheckScheduleID, Workflow: CheckVault, Args: []any{in}, TaskQueue: taskQueue,
			TypedSearchAttributes: temporal.NewSearchAttributes(AttrKind.ValueSet(string(KindCheck))),
		},
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	}
}
