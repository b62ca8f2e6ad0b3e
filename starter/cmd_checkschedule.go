package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) vaultCheckScheduleCmd() *cobra.Command {
	var at, tz, subset string
	var readData, off bool
	cmd := &cobra.Command{
		Use:   "check-schedule",
		Short: "Run the vault check every day, re-reading a share of the data each time",
		Long: `Create or update the Temporal Schedule vault-check, which runs 'vault check'
daily at --at in --time-zone. With --read-data-subset N% each run re-reads and
re-hashes the next N% of the packs (the share moves by one every day), so the
whole vault is re-read every 100/N days. The schedule shows in the Temporal UI
(Schedules), where it can be paused or triggered; --off deletes it.`,
		Example: `  # every night at 02:30 UTC, the whole vault re-read every 10 days
  vmvault vault check-schedule --at 02:30 --read-data-subset 10%

  vmvault vault check-schedule --off`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			if off {
				res, err := a.syncSchedule(ctx, workflows.SyncScheduleInput{Delete: workflows.CheckScheduleID})
				if err == nil && res.Missing {
					err = fmt.Errorf("delete schedule %s: there is no such schedule", workflows.CheckScheduleID)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "deleted schedule %s\n", workflows.CheckScheduleID)
				return nil
			}
			t, err := time.Parse("15:04", at)
			if err != nil {
				return usagef(cmd, "--at %q: want HH:MM", at)
			}
			if _, err := policy.LoadZone(tz); err != nil {
				return usagef(cmd, "--time-zone %v", err)
			}
			in := workflows.CheckVaultInput{ReadData: readData, HeartbeatTimeout: a.cfg.HeartbeatTimeout}
			if subset != "" {
				n, err := strconv.Atoi(strings.TrimSuffix(subset, "%"))
				if err != nil || n < 1 || n > 100 {
					return usagef(cmd, "--read-data-subset %q: want a percentage from 1%% to 100%%", subset)
				}
				in.ReadData, in.ReadDataPercent = true, n
			}
			req, err := workflows.CheckScheduleRequest(a.cfg.TaskQueue, t.Hour(), t.Minute(), tz, in)
			if err != nil {
				return err
			}
			return a.writeSchedule(ctx, req)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&at, "at", "03:00", "time of day, HH:MM")
	f.StringVar(&tz, "time-zone", "UTC", "IANA time zone of --at")
	f.StringVar(&subset, "read-data-subset", "", "re-read the next N% of the packs each run, e.g. 10%")
	f.BoolVar(&readData, "read-data", false, "re-read all data every run")
	f.BoolVar(&off, "off", false, "delete the schedule")
	return cmd
}

// writeSchedule creates or updates a vault-level schedule through the
// SyncSchedule workflow (schedule-ID) and says which.
func (a *app) writeSchedule(ctx context.Context, req activities.ScheduleRequest) error {
	res, err := a.syncSchedule(ctx, workflows.SyncScheduleInput{Schedule: &req})
	if err != nil {
		return fmt.Errorf("schedule %s: %w", req.ID, err)
	}
	fmt.Fprintf(a.out, "%s schedule %s: %s\n", res.Verb, res.ID, res.Comment)
	return nil
}

func (a *app) syncSchedule(ctx context.Context, in workflows.SyncScheduleInput) (workflows.SyncScheduleResult, error) {
	in.RequestedBy = whoAsked()
	var res workflows.SyncScheduleResult
	err := a.runChange(ctx, workflows.SyncScheduleStartOptions(a.cfg.TaskQueue, in), workflows.SyncSchedule, in, &res, nil)
	return res, err
}
