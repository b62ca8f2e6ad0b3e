package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/policystore"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) protectCmd() *cobra.Command {
	var pol, host string
	cmd := &cobra.Command{
		Use:   "protect VM",
		Short: "Back up a VM on a schedule, by a policy",
		Long: `Protect a VM with a policy: write its protection record into the vault and
create (or update) its Temporal Schedule protect-<vm>, which backs it up at
the policy's times plus the VM's own offset (so a policy's VMs are spread
over its window). The schedule is visible, pausable and triggerable in the
Temporal UI and with 'temporal schedule'. A scheduled run that finds a
backup of the VM running is skipped and says so. Protecting a protected VM
again changes its policy or host, or recreates a lost schedule. A vault
protects at most VMVAULT_MAX_PROTECTED_VMS VMs (1000).`,
		Example: `  vmvault protect web01
  vmvault protect db1 --policy gold --host hv02

  # run it now, from Temporal
  temporal schedule trigger --schedule-id protect-web01`,
		Args: oneArg("one VM name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			return a.protect(ctx, args[0], pol, host, cmd.Flags().Changed("host"))
		}),
	}
	cmd.Flags().StringVar(&pol, "policy", policy.DefaultName, "the policy")
	cmd.Flags().StringVar(&host, "host", "", "host that owns the VM (default: the host it is protected on, else $VMVAULT_HOST)")
	return a.jsonFlag(cmd)
}

func (a *app) protect(ctx context.Context, vm, name, host string, hostGiven bool) error {
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	st0 := policystore.New(v)
	p, err := st0.Policy(ctx, name)
	if err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if !hostGiven {
		host = a.cfg.Host
	}
	pr, err := st0.Protect(ctx, policystore.ProtectRequest{VM: vm, Policy: p.Name, Host: host, HostGiven: hostGiven,
		Since: time.Now().UTC(), Max: a.cfg.MaxProtectedVMs})
	if err != nil {
		return err
	}
	st, err := a.reconcileSchedule(ctx, p, pr)
	if err != nil {
		return fmt.Errorf("vm %s is protected by policy %s in the vault, but its schedule is not written (run protect again): %w", vm, p.Name, err)
	}
	if a.json {
		return a.printJSON(st)
	}
	fmt.Fprintf(a.out, "protected vm %s (host %s) with policy %s: schedule %s, %s %s, next run %s\n",
		vm, pr.Host, p.Name, st.Schedule, st.Calendar, p.Schedule.TimeZone, fmtTime(st.NextRun))
	return nil
}

// scheduleState is a protected VM's schedule as written.
type scheduleState struct {
	VM       string    `json:"vm"`
	Host     string    `json:"host"`
	Policy   string    `json:"policy"`
	Schedule string    `json:"schedule"`
	Calendar string    `json:"calendar"`
	NextRun  time.Time `json:"next_run,omitzero"`
}

// reconcileSchedule creates the VM's schedule from its protection and
// policy, or updates it in place (a paused schedule stays paused).
func (a *app) reconcileSchedule(ctx context.Context, p policy.Policy, pr policy.Protection) (scheduleState, error) {
	st := scheduleState{VM: pr.VM, Host: pr.Host, Policy: p.Name, Schedule: workflows.ProtectScheduleID(pr.VM)}
	c, err := a.dial()
	if err != nil {
		return st, err
	}
	cal, err := p.CalendarFor(pr.VM)
	if err != nil {
		return st, err
	}
	st.Calendar = cal.String()
	in := workflows.ScheduledBackupInput{VM: pr.VM, Host: pr.Host, BackupTimeout: a.cfg.BackupTimeout, HeartbeatTimeout: a.cfg.HeartbeatTimeout}
	opts, err := workflows.ScheduleFor(p, in, a.cfg.TaskQueue)
	if err != nil {
		return st, err
	}
	sc := c.ScheduleClient()
	h, err := sc.Create(ctx, opts)
	if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		h = sc.GetHandle(ctx, opts.ID)
		err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := u.Description.Schedule
			s.Spec, s.Action = &opts.Spec, opts.Action
			if s.Policy == nil {
				s.Policy = &client.SchedulePolicies{}
			}
			s.Policy.Overlap, s.Policy.CatchupWindow = opts.Overlap, opts.CatchupWindow
			return &client.ScheduleUpdate{Schedule: &s}, nil
		}})
	}
	if err != nil {
		return st, fmt.Errorf("write schedule %s: %w", opts.ID, err)
	}
	if d, err := h.Describe(ctx); err == nil && len(d.Info.NextActionTimes) > 0 {
		st.NextRun = d.Info.NextActionTimes[0]
	}
	return st, nil
}

func (a *app) unprotectCmd() *cobra.Command {
	var retain, del bool
	cmd := &cobra.Command{
		Use:   "unprotect VM --retain-data | --delete-data",
		Short: "Stop backing up a VM on a schedule",
		Long: `Stop protecting a VM: delete its Temporal Schedule and its protection record.
--retain-data keeps its recovery points (restore and 'rp list' still work);
--delete-data also deletes them, through soft delete. A backup already
running finishes.`,
		Example: `  vmvault unprotect web01 --retain-data
  vmvault unprotect old-vm --delete-data`,
		Args: oneArg("one VM name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if retain == del {
				return usagef(cmd, "unprotect needs exactly one of --retain-data, --delete-data")
			}
			return a.unprotect(ctx, args[0], del)
		}),
	}
	cmd.Flags().BoolVar(&retain, "retain-data", false, "keep the VM's recovery points")
	cmd.Flags().BoolVar(&del, "delete-data", false, "delete the VM's recovery points (soft delete)")
	return cmd
}

func (a *app) unprotect(ctx context.Context, vm string, deleteData bool) error {
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	var pr policy.Protection
	recErr := v.GetRecord(ctx, policy.RecordProtection, vm, &pr)
	if recErr != nil && !errors.Is(recErr, vault.ErrNoRecord) {
		return recErr
	}
	if deleteData { // an immutable vault refuses before anything changes
		rps, _ := v.ListRecoveryPoints(ctx, vm)
		if err := v.CheckDeletable(ctx, rps, time.Now()); err != nil {
			return fmt.Errorf("unprotect %s --delete-data refused, nothing was changed: %w", vm, err)
		}
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	id := workflows.ProtectScheduleID(vm)
	// The schedule first: a record without a schedule still shows in
	// 'protected', a schedule without a record would back up unseen.
	schedErr := c.ScheduleClient().GetHandle(ctx, id).Delete(ctx)
	var nf *serviceerror.NotFound
	switch {
	case schedErr == nil:
	case errors.As(schedErr, &nf):
		if recErr != nil {
			return fmt.Errorf("vm %s is not protected in %s (see 'vmvault protected')", vm, v.Location())
		}
	default:
		return fmt.Errorf("delete schedule %s: %w", id, schedErr)
	}
	if recErr == nil {
		if err := v.DeleteRecord(ctx, policy.RecordProtection, vm); err != nil {
			return err
		}
	}
	rps, err := v.ListRecoveryPoints(ctx, vm)
	if err = a.warnCorrupt(err); err != nil {
		return err
	}
	if !deleteData {
		fmt.Fprintf(a.out, "unprotected vm %s: schedule %s deleted; its %d recovery points are kept\n", vm, id, len(rps))
		return nil
	}
	// Through soft delete: 'vmvault rp undelete' brings each back until
	// the soft-delete period ends; GC frees the space only after that.
	now := time.Now()
	var until time.Time
	for _, rp := range rps {
		dp, err := v.DeleteRecoveryPoint(ctx, rp.Ref(), now, a.cfg.SoftDeletePeriod())
		if err != nil {
			return fmt.Errorf("vm %s is unprotected, but deleting its recovery points stopped at %s (run unprotect --delete-data again): %w", vm, rp.Ref(), err)
		}
		until = dp.PurgeAfter
	}
	fmt.Fprintf(a.out, "unprotected vm %s: schedule %s deleted; its %d recovery points are soft-deleted (undelete with 'vmvault rp undelete' until %s)\n",
		vm, id, len(rps), fmtTime(until))
	return nil
}

func (a *app) protectedCmd() *cobra.Command {
	return a.jsonFlag(&cobra.Command{
		Use:   "protected",
		Short: "List the protected VMs, their policy, last backup, next run and health",
		Long: `List the VMs the vault protects: host, policy, the time of the latest
recovery point, the schedule's next run, and health: ok, paused (in the
Temporal UI or CLI), last run failed, never backed up, or no schedule (run
'vmvault protect VM' again to recreate it).`,
		Example: "  vmvault protected\n  vmvault protected --json | jq -r '.[] | select(.health != \"ok\") | .vm'",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			return a.protected(ctx)
		}),
	})
}

type protectedRow struct {
	policy.Protection
	LastBackup time.Time `json:"last_backup,omitzero"`
	NextRun    time.Time `json:"next_run,omitzero"`
	Health     string    `json:"health"`
}

// Health of a protected VM.
const (
	healthOK         = "ok"
	healthPaused     = "paused"
	healthFailed     = "last run failed"
	healthNever      = "never backed up"
	healthNoSchedule = "no schedule"
)

func (a *app) protected(ctx context.Context) error {
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	prots, err := policystore.New(v).Protections(ctx)
	if err != nil {
		return err
	}
	rps, err := v.ListRecoveryPoints(ctx, "")
	if err = a.warnCorrupt(err); err != nil {
		return err
	}
	last := map[string]time.Time{}
	for _, rp := range rps {
		if rp.CompletedAt.After(last[rp.VM]) {
			last[rp.VM] = rp.CompletedAt
		}
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	rows := make([]protectedRow, len(prots))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, pr := range prots {
		rows[i] = protectedRow{Protection: pr, LastBackup: last[pr.VM]}
		g.Go(func() error { return scheduleHealth(gctx, c, &rows[i]) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if a.json {
		return a.printJSON(rows)
	}
	tw := a.table("VM\tHOST\tPOLICY\tLAST BACKUP\tNEXT RUN\tHEALTH")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.VM, r.Host, r.Policy, fmtTime(r.LastBackup), fmtTime(r.NextRun), r.Health)
	}
	return tw.Flush()
}

// scheduleHealth fills in the next run and health of a protected VM from
// its schedule and the schedule's latest run.
func scheduleHealth(ctx context.Context, c client.Client, r *protectedRow) error {
	d, err := c.ScheduleClient().GetHandle(ctx, workflows.ProtectScheduleID(r.VM)).Describe(ctx)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		r.Health = healthNoSchedule
		return nil
	} else if err != nil {
		return fmt.Errorf("describe schedule %s: %w", workflows.ProtectScheduleID(r.VM), err)
	}
	if len(d.Info.NextActionTimes) > 0 {
		r.NextRun = d.Info.NextActionTimes[0]
	}
	switch {
	case d.Schedule.State != nil && d.Schedule.State.Paused:
		r.Health = healthPaused
	case lastRunFailed(ctx, c, d.Info.RecentActions):
		r.Health = healthFailed
	case r.LastBackup.IsZero():
		r.Health = healthNever
	default:
		r.Health = healthOK
	}
	return nil
}

func lastRunFailed(ctx context.Context, c client.Client, recent []client.ScheduleActionResult) bool {
	if len(recent) == 0 || recent[len(recent)-1].StartWorkflowResult == nil {
		return false
	}
	run := recent[len(recent)-1].StartWorkflowResult
	d, err := c.DescribeWorkflowExecution(ctx, run.WorkflowID, run.FirstExecutionRunID)
	if err != nil {
		return false
	}
	switch d.GetWorkflowExecutionInfo().GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT,
		enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return true
	}
	return false
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
