package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

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
			c, err := a.dial()
			if err != nil {
				return err
			}
			if off {
				if err := c.ScheduleClient().GetHandle(ctx, workflows.CheckScheduleID).Delete(ctx); err != nil {
					return fmt.Errorf("delete schedule %s: %w", workflows.CheckScheduleID, err)
				}
				fmt.Fprintf(a.out, "deleted schedule %s\n", workflows.CheckScheduleID)
				return nil
			}
			t, err := time.Parse("15:04", at)
			if err != nil {
				return usagef(cmd, "--at %q: want HH:MM", at)
			}
			if _, err := time.LoadLocation(tz); err != nil {
				return usagef(cmd, "--time-zone %q: %v", tz, err)
			}
			in := workflows.CheckVaultInput{ReadData: readData, HeartbeatTimeout: a.cfg.HeartbeatTimeout}
			if subset != "" {
				n, err := strconv.Atoi(strings.TrimSuffix(subset, "%"))
				if err != nil || n < 1 || n > 100 {
					return usagef(cmd, "--read-data-subset %q: want a percentage from 1%% to 100%%", subset)
				}
				in.ReadData, in.ReadDataPercent = true, n
			}
			return a.upsertSchedule(ctx, c, workflows.CheckScheduleFor(a.cfg.TaskQueue, t.Hour(), t.Minute(), tz, in))
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

// upsertSchedule creates the schedule, or updates its spec and action.
func (a *app) upsertSchedule(ctx context.Context, c client.Client, opts client.ScheduleOptions) error {
	sc := c.ScheduleClient()
	_, err := sc.Create(ctx, opts)
	verb := "created"
	if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		verb = "updated"
		err = sc.GetHandle(ctx, opts.ID).Update(ctx, client.ScheduleUpdateOptions{
			DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				s := u.Description.Schedule
				s.Spec, s.Action = &opts.Spec, opts.Action
				s.Policy.Overlap = opts.Overlap
				return &client.ScheduleUpdate{Schedule: &s}, nil
			},
		})
	}
	if err != nil {
		return fmt.Errorf("schedule %s: %w", opts.ID, err)
	}
	fmt.Fprintf(a.out, "%s schedule %s: %s\n", verb, opts.ID, opts.Spec.Calendars[0].Comment)
	return nil
}
