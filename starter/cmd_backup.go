package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/workflows"
)

type backupFlags struct {
	host        string
	wait        bool
	keep        bool
	keepFor     time.Duration
	consistency string
	timeout     time.Duration
}

func (a *app) backupCmd() *cobra.Command {
	var f backupFlags
	cmd := &cobra.Command{
		Use:   "backup VM",
		Short: "Back up a VM into the vault",
		Long: `Start a backup job of one VM: snapshot, then send every disk but the temp disk
to the vault (full the first time, then incremental), then a recovery point.
One backup per VM runs at a time. Without --wait it prints the job and returns;
with --wait it shows progress on stderr and prints the recovery point.`,
		Example: `  # start a backup and return; follow it with 'vmvault job show backup-web01'
  vmvault backup web01

  # wait for it, with a progress bar per disk on a terminal
  vmvault backup web01 --wait

  # a VM on another hypervisor host, result as JSON for scripts
  vmvault backup db1 --host hv02 --wait --json | jq -r .recovery_point

  # keep the point-in-time image on the host for a day (instant restore:
  # 'vmvault restore RP --new-vm NAME' then reads nothing from the vault)
  vmvault backup web01 --keep-snapshot --keep-for 24h

  # no quiescing: a crash-consistent snapshot, without the backup extension
  vmvault backup web01 --consistency crash`,
		Args: oneArg("one VM name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("host") {
				f.host = a.cfg.Host
			}
			if !cmd.Flags().Changed("timeout") {
				f.timeout = a.cfg.BackupTimeout
			} else if err := positive(cmd, "timeout", f.timeout); err != nil {
				return err
			}
			if cmd.Flags().Changed("keep-for") && (!f.keep || f.keepFor <= 0) {
				return usagef(cmd, "--keep-for goes with --keep-snapshot and must be positive")
			}
			c, err := platform.ParseConsistency(f.consistency)
			if err != nil {
				return usagef(cmd, "--%s", err)
			}
			return a.backup(ctx, args[0], f, c)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", "", "host that owns the VM (default $VMVAULT_HOST, local)")
	fl.BoolVar(&f.wait, "wait", false, "wait for the job and show its progress")
	fl.BoolVar(&f.keep, "keep-snapshot", false, "keep the point-in-time image on the host for instant restores (qemu platform; others say they cannot)")
	fl.DurationVar(&f.keepFor, "keep-for", workflows.DefaultKeepFor, "with --keep-snapshot: how long the image is kept; a cleanup at the start of each backup on the host removes expired ones")
	fl.StringVar(&f.consistency, "consistency", platform.AppConsistent.Level(), "strongest consistency wanted: app, file or crash (crash skips the backup extension); a running VM falls back and the job says why")
	fl.DurationVar(&f.timeout, "timeout", 0, "limit for the whole job (default $VMVAULT_BACKUP_TIMEOUT, 24h)")
	return a.jsonFlag(cmd)
}

// positive refuses a duration flag that is zero or negative: a job limit
// already past is no limit an operator means.
func positive(cmd *cobra.Command, flag string, d time.Duration) error {
	if d <= 0 {
		return usagef(cmd, "--%s %s: want a positive duration", flag, d)
	}
	return nil
}

func (a *app) backup(ctx context.Context, vm string, f backupFlags, consistency platform.Consistency) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	in := workflows.BackupVMInput{VM: vm, Host: f.host, KeepSnapshot: f.keep, HeartbeatTimeout: a.cfg.HeartbeatTimeout, Limit: f.timeout,
		Consistency: consistency}
	if f.keep {
		in.KeepFor = f.keepFor
	}
	opts := workflows.BackupStartOptions(a.cfg.TaskQueue, in, f.timeout)
	run, err := c.ExecuteWorkflow(ctx, opts, workflows.BackupVM, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("a backup of vm %s is already running (job %s, run %s): one backup per VM at a time", vm, opts.ID, started.RunId)
	}
	if err != nil {
		return fmt.Errorf("start backup of vm %s: %w", vm, err)
	}
	if !f.wait {
		return a.started("backup", run)
	}
	fmt.Fprintf(a.errOut, "backup job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.BackupVMResult
	if err := a.watch(ctx, c, run, &res); err != nil {
		return jobError{what: "backup of vm " + vm + " failed", err: err}
	}
	if a.json {
		return a.printJSON(res)
	}
	t := res.Totals
	fmt.Fprintf(a.out, "recovery point %s: %s, %s; scanned %s, changed %s, uploaded %s, stored %s\n",
		res.RecoveryPoint, res.Type, res.Consistency, size(t.ScannedBytes), size(t.ChangedBytes), size(t.NewBytes), size(t.StoredBytes))
	for _, n := range res.Notes {
		fmt.Fprintf(a.out, "note: %s\n", n)
	}
	return nil
}
