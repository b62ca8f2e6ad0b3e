package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/policystore"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) policyCmd() *cobra.Command {
	return group("policy", "Create, list, show, update and delete backup policies",
		a.policyCreateCmd(), a.policyListCmd(), a.policyShowCmd(), a.policyUpdateCmd(), a.policyDeleteCmd())
}

// policyFlags are the fields of a policy as flags; only those given change.
type policyFlags struct {
	tier, frequency, windowStart, timeZone, consistency string
	times, weekdays                                     []string
	everyHours, windowHours, instantRestore             int
	daily, weekly, monthly, yearly                      int
}

var policyFlagNames = []string{"tier", "frequency", "time", "weekdays", "every-hours", "window-start", "window-hours",
	"time-zone", "daily", "weekly", "monthly", "yearly", "instant-restore-days", "consistency"}

func (f *policyFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.tier, "tier", "", "standard (one backup a day) or enhanced (also hourly)")
	fl.StringVar(&f.frequency, "frequency", "", "daily, weekly or hourly (enhanced)")
	fl.StringSliceVar(&f.times, "time", nil, "time of day HH:MM of a daily or weekly schedule")
	fl.StringSliceVar(&f.weekdays, "weekdays", nil, "days of a weekly schedule, e.g. mon,thu")
	fl.IntVar(&f.everyHours, "every-hours", 0, "hourly schedule: every 4, 6, 8 or 12 hours")
	fl.StringVar(&f.windowStart, "window-start", "", "hourly schedule: start of the daily window, HH:MM")
	fl.IntVar(&f.windowHours, "window-hours", 0, "hourly: the window's length (a multiple of --every-hours); daily/weekly: the spread of the VMs' start times after --time (default 2)")
	fl.StringVar(&f.timeZone, "time-zone", "", "IANA time zone of the schedule, e.g. UTC, Europe/Berlin")
	fl.IntVar(&f.daily, "daily", 0, "daily recovery points kept (7-9999)")
	fl.IntVar(&f.weekly, "weekly", 0, "weekly recovery points kept (0-5163)")
	fl.IntVar(&f.monthly, "monthly", 0, "monthly recovery points kept (0-1188)")
	fl.IntVar(&f.yearly, "yearly", 0, "yearly recovery points kept (0-99)")
	fl.IntVar(&f.instantRestore, "instant-restore-days", 0, "days a backup's snapshot is kept for instant restore (1-5 standard, 1-30 enhanced)")
	fl.StringVar(&f.consistency, "consistency", "", "app, file or crash")
}

// apply sets the fields given on the command line and reports whether any
// was. A new frequency drops the fields that do not apply to it unless
// they are given too.
func (f *policyFlags) apply(cmd *cobra.Command, p *policy.Policy) bool {
	fl, s := cmd.Flags(), &p.Schedule
	if fl.Changed("frequency") && policy.Frequency(f.frequency) != s.Frequency {
		s.Frequency = policy.Frequency(f.frequency)
		if s.Frequency == policy.Hourly {
			s.Times = nil
		} else {
			s.EveryHours, s.WindowStart = 0, ""
			if len(s.Times) == 0 {
				s.Times = []string{"22:00"}
			}
		}
		if s.Frequency != policy.Weekly {
			s.Weekdays = nil
		}
		s.WindowHours = 0
	}
	set := func(name string, fn func()) {
		if fl.Changed(name) {
			fn()
		}
	}
	set("tier", func() { p.Tier = policy.Tier(f.tier) })
	set("time", func() { s.Times = f.times })
	set("weekdays", func() { s.Weekdays = f.weekdays })
	set("every-hours", func() { s.EveryHours = f.everyHours })
	set("window-start", func() { s.WindowStart = f.windowStart })
	set("window-hours", func() { s.WindowHours = f.windowHours })
	set("time-zone", func() { s.TimeZone = f.timeZone })
	set("daily", func() { p.Retention.Daily = f.daily })
	set("weekly", func() { p.Retention.Weekly = f.weekly })
	set("monthly", func() { p.Retention.Monthly = f.monthly })
	set("yearly", func() { p.Retention.Yearly = f.yearly })
	set("instant-restore-days", func() { p.InstantRestoreDays = f.instantRestore })
	set("consistency", func() { p.Consistency = policy.Consistency(f.consistency) })
	for _, name := range policyFlagNames {
		if fl.Changed(name) {
			return true
		}
	}
	return false
}

const policyFieldsHelp = `Fields: --tier standard|enhanced; --frequency daily|weekly|hourly; --time HH:MM
(daily, weekly: one time a day); --weekdays mon,thu (weekly); --every-hours
4|6|8|12, --window-start HH:MM and --window-hours N (hourly, enhanced tier
only); --time-zone (IANA); retention --daily 7-9999, --weekly, --monthly,
--yearly; --instant-restore-days 1-5 (1-30 enhanced); --consistency
app|file|crash. The VMs of a policy do not all start at its time: each starts
at a fixed offset after it (a hash of its name), within --window-hours
(daily and weekly, default 2 h) or within --every-hours (hourly).`

func (a *app) policyCreateCmd() *cobra.Command {
	var f policyFlags
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a backup policy",
		Long: `Create a policy in the vault, starting from the default policy (daily at 22:00
UTC, 30 daily points, snapshots kept 2 days, app-consistent, standard tier)
and changing the fields given. An invalid policy is refused with the field
and the reason. Policies are stored in the vault, so they move with it.

` + policyFieldsHelp,
		Example: `  # daily at 01:30 Berlin time, 14 daily, 8 weekly and 12 monthly points
  vmvault policy create gold --time 01:30 --time-zone Europe/Berlin --daily 14 --weekly 8 --monthly 12

  # weekly on Saturday and Wednesday at 23:00
  vmvault policy create weekly --frequency weekly --weekdays sat,wed --time 23:00

  # enhanced: every 4 hours from 08:00 to 20:00, snapshots kept 7 days
  vmvault policy create hourly --tier enhanced --frequency hourly --every-hours 4 \
      --window-start 08:00 --window-hours 12 --instant-restore-days 7`,
		Args: oneArg("one policy name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			p := policy.Default()
			p.Name = args[0]
			f.apply(cmd, &p)
			return a.policyCreate(ctx, p)
		}),
	}
	f.add(cmd)
	return a.jsonFlag(cmd)
}

func (a *app) policyCreate(ctx context.Context, p policy.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	if err := policystore.New(v).CreatePolicy(ctx, p); err != nil {
		return err
	}
	if a.json {
		return a.printJSON(p)
	}
	fmt.Fprintf(a.out, "created policy %s: %s\n", p.Name, describePolicy(p))
	return nil
}

func (a *app) policyListCmd() *cobra.Command {
	return a.jsonFlag(&cobra.Command{
		Use:     "list",
		Short:   "List the backup policies and the VMs each protects",
		Long:    `List the vault's policies, the default policy first, with the number of VMs each protects.`,
		Example: "  vmvault policy list\n  vmvault policy list --json | jq -r '.[].name'",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			return a.policyList(ctx)
		}),
	})
}

// policyRow is a policy with the VMs it protects.
type policyRow struct {
	policy.Policy
	ProtectedVMs []string `json:"protected_vms"`
}

func (a *app) policyRows(ctx context.Context, v *vault.Vault) ([]policyRow, error) {
	st := policystore.New(v)
	ps, err := st.Policies(ctx)
	if err != nil {
		return nil, err
	}
	prots, err := st.Protections(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]policyRow, len(ps))
	for i, p := range ps {
		rows[i] = policyRow{Policy: p, ProtectedVMs: []string{}}
		for _, pr := range prots {
			if pr.Policy == p.Name {
				rows[i].ProtectedVMs = append(rows[i].ProtectedVMs, pr.VM)
			}
		}
	}
	return rows, nil
}

func (a *app) policyList(ctx context.Context) error {
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	rows, err := a.policyRows(ctx, v)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(rows)
	}
	tw := a.table("NAME\tTIER\tSCHEDULE\tRETENTION\tINSTANT RESTORE\tCONSISTENCY\tVMS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d days\t%s\t%d\n", r.Name, r.Tier, describeSchedule(r.Schedule), describeRetention(r.Retention),
			r.InstantRestoreDays, r.Consistency, len(r.ProtectedVMs))
	}
	return tw.Flush()
}

func (a *app) policyShowCmd() *cobra.Command {
	return a.jsonFlag(&cobra.Command{
		Use:     "show NAME",
		Short:   "Show a backup policy",
		Long:    `Show every field of a policy and the VMs it protects.`,
		Example: "  vmvault policy show default\n  vmvault policy show gold --json",
		Args:    oneArg("one policy name"),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, args []string) error {
			v, err := openVault(ctx, a.cfg)
			if err != nil {
				return err
			}
			rows, err := a.policyRows(ctx, v)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r.Name == args[0] {
					return a.printPolicy(r)
				}
			}
			return policystore.New(v).NoPolicy(args[0])
		}),
	})
}

func (a *app) printPolicy(r policyRow) error {
	if a.json {
		return a.printJSON(r)
	}
	tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	s := r.Schedule
	fmt.Fprintf(tw, "name\t%s\n", r.Name)
	fmt.Fprintf(tw, "tier\t%s\n", r.Tier)
	fmt.Fprintf(tw, "schedule\t%s\n", describeSchedule(s))
	fmt.Fprintf(tw, "spread\tVMs start within %s of each scheduled time\n", r.Spread())
	fmt.Fprintf(tw, "retention\t%s\n", describeRetention(r.Retention))
	fmt.Fprintf(tw, "instant restore\t%d days\n", r.InstantRestoreDays)
	fmt.Fprintf(tw, "consistency\t%s\n", r.Consistency)
	fmt.Fprintf(tw, "protected vms\t%s\n", dash(strings.Join(r.ProtectedVMs, ", ")))
	return tw.Flush()
}

func (a *app) policyUpdateCmd() *cobra.Command {
	var f policyFlags
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a backup policy and the schedules of the VMs it protects",
		Long: `Change the fields given and reschedule every VM the policy protects. The
worker runs it as the workflow policy-<name> (visible in the Temporal UI with
who asked and, by its "progress" query, how many schedules are done): it
writes the policy, then updates the VMs' Temporal Schedules in place (a
paused schedule stays paused), in batches, each retried; it finishes by
itself if the worker or this command dies halfway. The policy in the vault
is the truth: if a schedule still cannot be updated, the command says
which, and 'vmvault protect VM --policy NAME' retries it.

` + policyFieldsHelp,
		Example: `  # move the default policy's backups to 02:00 New York time
  vmvault policy update default --time 02:00 --time-zone America/New_York

  # keep a year of monthly points
  vmvault policy update gold --monthly 12`,
		Args: oneArg("one policy name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			v, err := openVault(ctx, a.cfg)
			if err != nil {
				return err
			}
			p, err := policystore.New(v).Policy(ctx, args[0])
			if err != nil {
				return err
			}
			if !f.apply(cmd, &p) {
				return usagef(cmd, "policy update: give at least one field to change")
			}
			return a.policyUpdate(ctx, v, p)
		}),
	}
	f.add(cmd)
	return a.jsonFlag(cmd)
}

// policyUpdate runs the UpdatePolicy workflow (policy-NAME): it writes the
// policy and reschedules every VM the policy protects, and finishes by
// itself if this command or the worker dies halfway.
func (a *app) policyUpdate(ctx context.Context, v *vault.Vault, p policy.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	prots, err := policystore.New(v).ProtectedBy(ctx, p.Name)
	if err != nil {
		return err
	}
	in := workflows.UpdatePolicyInput{Policy: p, RequestedBy: whoAsked(), TaskQueue: a.cfg.TaskQueue,
		BackupTimeout: a.cfg.BackupTimeout, HeartbeatTimeout: a.cfg.HeartbeatTimeout}
	started := func(run client.WorkflowRun) {
		fmt.Fprintf(a.errOut, "started job %s (run %s): updating %d schedules\n", run.GetID(), run.GetRunID(), len(prots))
	}
	var res workflows.UpdatePolicyResult
	if err := a.runChange(ctx, workflows.UpdatePolicyStartOptions(a.cfg.TaskQueue, in), workflows.UpdatePolicy, in, &res, started); err != nil {
		return err
	}
	vms := res.Rescheduled
	if a.json {
		if err := a.printJSON(map[string]any{"policy": res.Policy, "rescheduled": vms}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.out, "updated policy %s: %s\n", p.Name, describePolicy(res.Policy))
		if len(vms) > 0 {
			fmt.Fprintf(a.out, "rescheduled %d vms: %s\n", len(vms), strings.Join(vms, ", "))
		}
	}
	if len(res.Failed) > 0 {
		errs := make([]error, len(res.Failed))
		for i, f := range res.Failed {
			errs[i] = fmt.Errorf("vm %s: %s", f.VM, f.Error)
		}
		return fmt.Errorf("policy %s is updated, but %d schedules are not (retry with 'vmvault protect VM --policy %s'): %w", p.Name, len(errs), p.Name, errors.Join(errs...))
	}
	return nil
}

func (a *app) policyDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a backup policy no VM uses",
		Long: `Delete a policy from the vault. A policy that protects VMs is refused, naming
them: protect them with another policy or unprotect them first. The default
policy cannot be deleted (change it with 'policy update default').`,
		Example: "  vmvault policy delete weekly",
		Args:    oneArg("one policy name"),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, args []string) error {
			return a.policyDelete(ctx, args[0])
		}),
	}
}

func (a *app) policyDelete(ctx context.Context, name string) error {
	if err := policy.Deletable(name); err != nil { // before the vault is opened
		return err
	}
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	if err := policystore.New(v).DeletePolicy(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "deleted policy %s\n", name)
	return nil
}
