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
	"golang.org/x/sync/errgroup"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/policystore"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) protectCmd() *cobra.Command {
	var pol, host string
	cmd := &cobra.Command{
		Use:   "protect VM",
		Short: "Back up a VM on a schedule, by a policy",
		Long: `Protect a VM with a policy. The worker runs it as the workflow
protection-<vm> (visible in the Temporal UI with who asked): it writes the
VM's protection record into the vault and creates (or updates) its Temporal
Schedule protect-<vm>, which backs it up at the policy's times plus the VM's
own offset (so a policy's VMs are spread over its window). The schedule is
visible, pausable and triggerable in the Temporal UI and with 'temporal
schedule'. A scheduled run that finds a backup of the VM running is skipped
and says so. Protecting a protected VM again changes its policy or host, or
recreates a lost schedule; a second change of the same VM waits for the
first. A vault protects at most VMVAULT_MAX_PROTECTED_VMS VMs (1000).`,
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
	if !hostGiven {
		host = a.cfg.Host
	}
	in := workflows.ProtectInput{VM: vm, Policy: name, Host: host, HostGiven: hostGiven, MaxProtectedVMs: a.cfg.MaxProtectedVMs,
		TaskQueue: a.cfg.TaskQueue, BackupTimeout: a.cfg.BackupTimeout, HeartbeatTimeout: a.cfg.HeartbeatTimeout, RequestedBy: whoAsked()}
	var res workflows.ProtectResult
	if err := a.runChange(ctx, workflows.ProtectStartOptions(a.cfg.TaskQueue, in), workflows.Protect, in, &res, nil); err != nil {
		return err
	}
	st := res.Schedule
	if a.json {
		return a.printJSON(st)
	}
	fmt.Fprintf(a.out, "protected vm %s (host %s) with policy %s: schedule %s, %s %s, next run %s\n",
		vm, st.Host, st.Policy, st.Schedule, st.Calendar, res.TimeZone, fmtTime(st.NextRun))
	return nil
}

func (a *app) unprotectCmd() *cobra.Command {
	var retain, del bool
	cmd := &cobra.Command{
		Use:   "unprotect VM --retain-data | --delete-data",
		Short: "Stop backing up a VM on a schedule",
		Long: `Stop protecting a VM: the worker's workflow protection-<vm> deletes its
Temporal Schedule and its protection record. --retain-data keeps its
recovery points (restore and 'rp list' still work); --delete-data also
deletes them, through soft delete. A backup already running finishes.`,
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
	in := workflows.UnprotectInput{VM: vm, DeleteData: deleteData, KeepDeletedFor: a.cfg.SoftDeletePeriod(), RequestedBy: whoAsked()}
	var res workflows.UnprotectResult
	if err := a.runChange(ctx, workflows.UnprotectStartOptions(a.cfg.TaskQueue, in), workflows.Unprotect, in, &res, nil); err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(a.errOut, "warning:", w)
	}
	if !res.SoftDeleted {
		fmt.Fprintf(a.out, "unprotected vm %s: schedule %s deleted; its %d recovery points are kept\n", vm, res.Schedule, res.RecoveryPoints)
		return nil
	}
	fmt.Fprintf(a.out, "unprotected vm %s: schedule %s deleted; its %d recovery points are soft-deleted (undelete with 'vmvault rp undelete' until %s)\n",
		vm, res.Schedule, res.RecoveryPoints, fmtTime(res.PurgeAfter))
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
