package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) retentionCmd() *cobra.Command {
	return group("retention", "Expire recovery points by policy, soft-delete and purge them", a.retentionRunCmd(), a.retentionEnableCmd(), a.retentionDisableCmd())
}

type retentionRunFlags struct {
	dryRun   bool
	keepFor  time.Duration
	vms      []string
	rules    policy.Retention
	timeZone string
}

func (a *app) retentionRunCmd() *cobra.Command {
	var f retentionRunFlags
	cmd := &cobra.Command{
		Use:   "run [--dry-run] [--vm VM --daily N ...]",
		Short: "Run retention now and wait for it",
		Long: `Run the retention job (id 'retention' in the Temporal UI; one at a time) and
wait for it. For every protected VM it keeps, by its policy's retention, the
newest recovery point of each of the last N days, ISO weeks (Monday to
Sunday), months and years, counted in the policy's time zone over the
periods that hold a point; it never expires a VM's newest point. The others
are soft-deleted: 'vmvault rp undelete' brings them back until the
soft-delete period (VMVAULT_SOFT_DELETE_DAYS) ends. Then it purges the
soft-deleted points whose period has ended; 'vmvault vault gc' frees their
space. VMs that are not protected are left alone.

--vm with --daily/--weekly/--monthly/--yearly applies those rules to the
named VMs instead, protected or not. --keep-deleted-for purges soft-deleted
points deleted longer ago than that, for this run. The exit code is 1 if
retention failed for any VM.`,
		Example: `  # what would expire and be purged today
  vmvault retention run --dry-run

  vmvault retention run --json

  # keep only today's newest point of web01 (and older days' newest, 7 days)
  vmvault retention run --vm web01 --daily 7 --time-zone Europe/Berlin`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			in, err := a.retentionInput(cmd, f)
			if err != nil {
				return err
			}
			return a.retentionRun(ctx, in)
		}),
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.dryRun, "dry-run", false, "report what would be expired and purged; change nothing")
	fl.DurationVar(&f.keepFor, "keep-deleted-for", 0, "soft-delete period of this run (default $VMVAULT_SOFT_DELETE_DAYS days)")
	fl.StringSliceVar(&f.vms, "vm", nil, "apply the rules of the flags below to these VMs instead of the policies")
	fl.IntVar(&f.rules.Daily, "daily", 0, "with --vm: daily points to keep")
	fl.IntVar(&f.rules.Weekly, "weekly", 0, "with --vm: weekly points to keep")
	fl.IntVar(&f.rules.Monthly, "monthly", 0, "with --vm: monthly points to keep")
	fl.IntVar(&f.rules.Yearly, "yearly", 0, "with --vm: yearly points to keep")
	fl.StringVar(&f.timeZone, "time-zone", "UTC", "with --vm: time zone the days are counted in")
	return a.jsonFlag(cmd)
}

func (a *app) retentionInput(cmd *cobra.Command, f retentionRunFlags) (workflows.ApplyRetentionInput, error) {
	in := workflows.ApplyRetentionInput{KeepDeletedFor: a.cfg.SoftDeletePeriod(), DryRun: f.dryRun}
	if cmd.Flags().Changed("keep-deleted-for") {
		if f.keepFor <= 0 {
			return in, usagef(cmd, "--keep-deleted-for %s: want a positive duration", f.keepFor)
		}
		in.KeepDeletedFor = f.keepFor
	}
	ruleFlags := cmd.Flags().Changed("daily") || cmd.Flags().Changed("weekly") || cmd.Flags().Changed("monthly") || cmd.Flags().Changed("yearly")
	if ruleFlags != (len(f.vms) > 0) {
		return in, usagef(cmd, "--vm and the rules (--daily, --weekly, --monthly, --yearly) go together")
	}
	r := f.rules
	for _, c := range []struct {
		flag string
		n    int
	}{{"daily", r.Daily}, {"weekly", r.Weekly}, {"monthly", r.Monthly}, {"yearly", r.Yearly}} {
		if c.n < 0 {
			return in, usagef(cmd, "--%s %d: retention counts must not be negative", c.flag, c.n)
		}
	}
	if _, err := policy.LoadZone(f.timeZone); err != nil {
		return in, usagef(cmd, "--time-zone %v", err)
	}
	for _, vm := range f.vms {
		in.Targets = append(in.Targets, workflows.RetentionTarget{VM: vm, Policy: "(--vm)", Retention: r, TimeZone: f.timeZone})
	}
	return in, nil
}

func (a *app) retentionRun(ctx context.Context, in workflows.ApplyRetentionInput) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	run, err := c.ExecuteWorkflow(ctx, workflows.RetentionStartOptions(a.cfg.TaskQueue, in), workflows.ApplyRetention, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("a retention run is already going (job %s, run %s)", workflows.RetentionWorkflowID, started.RunId)
	}
	if err != nil {
		return fmt.Errorf("start retention: %w", err)
	}
	fmt.Fprintf(a.errOut, "retention job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.RetentionResult
	if err := run.Get(ctx, &res); err != nil {
		return jobError{what: "retention failed", err: err}
	}
	if a.json {
		if err := a.printJSON(res); err != nil {
			return err
		}
	} else {
		a.printRetention(res)
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("retention failed for %s", strings.Join(res.Failed, ", "))
	}
	return nil
}

func (a *app) printRetention(res workflows.RetentionResult) {
	verb, purged := "soft-deleted", "purged"
	if res.DryRun {
		verb, purged = "would soft-delete", "would purge"
	}
	tw := a.table("VM\tPOLICY\tKEPT\tEXPIRED\tUNDELETE UNTIL")
	for _, vm := range res.VMs {
		until, expired := "-", fmt.Sprint(len(vm.Expired))
		if !vm.PurgeAfter.IsZero() {
			until = vm.PurgeAfter.UTC().Format(time.RFC3339)
		}
		if vm.Error != "" {
			expired = "failed: " + vm.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", vm.VM, vm.Policy, vm.Kept, expired, until)
	}
	tw.Flush()
	for _, vm := range res.VMs {
		for _, ref := range vm.Expired {
			fmt.Fprintf(a.out, "%s %s\n", verb, ref)
		}
	}
	for _, ref := range res.Purged {
		fmt.Fprintf(a.out, "%s %s\n", purged, ref)
	}
	if res.Unreadable != "" {
		fmt.Fprintf(a.out, "kept unreadable soft-deleted points: %s\n", res.Unreadable)
	}
	fmt.Fprintln(a.out, res.Summary())
}

func (a *app) retentionEnableCmd() *cobra.Command {
	var at, tz string
	cmd := &cobra.Command{
		Use:   "enable --at HH:MM [--time-zone TZ]",
		Short: "Run retention every day at a time (a Temporal Schedule)",
		Long: `Create, or update, the Temporal Schedule 'retention' that runs the retention
job every day at HH:MM in the time zone (UTC by default), with the
soft-delete period of VMVAULT_SOFT_DELETE_DAYS. Pause, trigger or inspect it
in the Temporal UI or with 'temporal schedule'. A run that finds the
previous one still going is skipped.`,
		Example: `  vmvault retention enable --at 03:30
  vmvault retention enable --at 01:00 --time-zone Europe/Berlin
  temporal schedule describe --schedule-id retention`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			var h, m int
			if _, err := fmt.Sscanf(at, "%d:%d", &h, &m); err != nil || len(at) != 5 || h < 0 || h > 23 || m < 0 || m > 59 {
				return usagef(cmd, "--at %q: want HH:MM, e.g. 03:30", at)
			}
			if _, err := time.LoadLocation(tz); err != nil {
				return usagef(cmd, "--time-zone %q: %v", tz, err)
			}
			in := workflows.ApplyRetentionInput{KeepDeletedFor: a.cfg.SoftDeletePeriod()}
			req, err := workflows.RetentionScheduleRequest(a.cfg.TaskQueue, h, m, tz, in)
			if err != nil {
				return err
			}
			return a.retentionEnable(ctx, req)
		}),
	}
	cmd.Flags().StringVar(&at, "at", "", "time of day, HH:MM (required)")
	cmd.Flags().StringVar(&tz, "time-zone", "UTC", "IANA time zone of --at")
	_ = cmd.MarkFlagRequired("at")
	return cmd
}

func (a *app) retentionEnable(ctx context.Context, req activities.ScheduleRequest) error {
	res, err := a.syncSchedule(ctx, workflows.SyncScheduleInput{Schedule: &req})
	if err != nil {
		return fmt.Errorf("retention schedule: %w", err)
	}
	fmt.Fprintf(a.out, "%s schedule %s: %s\n", res.Verb, res.ID, res.Comment)
	return nil
}

func (a *app) retentionDisableCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "disable",
		Short:   "Delete the retention schedule (nothing expires until it is enabled again)",
		Example: `  vmvault retention disable`,
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			res, err := a.syncSchedule(ctx, workflows.SyncScheduleInput{Delete: workflows.RetentionScheduleID})
			if err != nil {
				return fmt.Errorf("delete retention schedule: %w", err)
			}
			if res.Missing {
				return fmt.Errorf("retention is not enabled (no schedule %s)", workflows.RetentionScheduleID)
			}
			fmt.Fprintf(a.out, "deleted schedule %s\n", workflows.RetentionScheduleID)
			return nil
		}),
	}
}
