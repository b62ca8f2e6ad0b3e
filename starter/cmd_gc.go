package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) vaultGCCmd() *cobra.Command {
	var grace time.Duration
	var dryRun, wait bool
	var repack int
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Free the packs no recovery point references",
		Long: `Run the vault's garbage collection job (vault-gc in the Temporal UI), one at a
time, in two phases. The mark finds every pack that no recovery point, no
soft-deleted point and no checkpoint of a running or resumable backup
references, and takes it out of deduplication at once: backups that start
from then on upload those blocks again instead of referencing them. The job
then waits out the grace period on a durable timer, and the sweep deletes
the candidates that are still unreferenced (a backup that had deduplicated
against one before the mark has committed by then, and keeps it). The grace
period must be longer than any backup job can run (VMVAULT_BACKUP_TIMEOUT,
24h): 25h by default (VMVAULT_GC_GRACE). GC refuses, before it starts, a
grace period that is not longer than the limit of a running backup. The mark also repacks packs that
are mostly garbage (--repack-below, 50% by default): their live blocks are
copied, verified, into new packs, and the next GC frees the old ones.
'vault stats' shows what the last GC freed.`,
		Example: `  # start it and return; the job sleeps 25h between mark and sweep
  vmvault vault gc

  # what would be collected, without changing anything
  vmvault vault gc --dry-run --wait

  # a test vault with no backup running: short grace, wait for the result
  vmvault vault gc --grace 1s --wait --json`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			if grace <= 0 {
				return usagef(cmd, "--grace %s: want a positive duration, e.g. 25h", grace)
			}
			if repack < 0 || repack > 100 {
				return usagef(cmd, "--repack-below %d: want a percentage from 0 (off) to 100", repack)
			}
			in := workflows.GCInput{Grace: grace, DryRun: dryRun, HeartbeatTimeout: a.cfg.HeartbeatTimeout, RepackBelowPercent: repack, NoRepack: repack == 0}
			return a.vaultGC(ctx, in, wait)
		}),
	}
	def := a.cfg.GCGrace
	if def <= 0 {
		def = vault.DefaultGCGrace
	}
	f := cmd.Flags()
	f.DurationVar(&grace, "grace", def, "time between mark and sweep; longer than any backup job runs")
	f.BoolVar(&dryRun, "dry-run", false, "report what would be collected; write and delete nothing")
	f.IntVar(&repack, "repack-below", int(vault.DefaultRepackBelow*100), "repack packs whose live blocks take less than this percentage of them (0: off)")
	f.BoolVar(&wait, "wait", false, "wait for the job (through the grace period) and print what it freed")
	return a.jsonFlag(cmd)
}

func (a *app) vaultGC(ctx context.Context, in workflows.GCInput, wait bool) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	if !in.DryRun {
		// The job refuses this itself; refusing here says so before it starts.
		l, err := activities.LongestBackupLimit(ctx, c, time.Time{})
		if err != nil {
			return err
		}
		if err := activities.CheckGCGrace(in.Grace, l); err != nil {
			return err
		}
	}
	run, err := c.ExecuteWorkflow(ctx, workflows.GCStartOptions(a.cfg.TaskQueue, in), workflows.CollectGarbage, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("a vault gc is already running (job %s, run %s): one at a time", workflows.GCWorkflowID, started.RunId)
	}
	if err != nil {
		return fmt.Errorf("start vault gc: %w", err)
	}
	if !wait {
		return a.started("vault gc", run)
	}
	fmt.Fprintf(a.errOut, "vault gc job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.GCResult
	if err := run.Get(ctx, &res); err != nil {
		return jobError{what: "vault gc failed", err: err}
	}
	if a.json {
		return a.printJSON(res)
	}
	m, s := res.Mark, res.Sweep
	fmt.Fprintf(a.out, "mark: %d recovery points, %d soft-deleted, %d checkpoints reference %d blobs; %d of %d packs unreferenced (%s)\n",
		m.RecoveryPoints, m.SoftDeleted, m.Checkpoints, m.ReferencedBlobs, m.Candidates, m.Packs, size(m.CandidateBytes))
	for _, p := range m.Unreadable {
		fmt.Fprintf(a.out, "left alone: %s: %s\n", p.Key, p.Reason)
	}
	if r := m.Repack; len(r.Packs) > 0 {
		fmt.Fprintf(a.out, "repack: %d mostly-garbage packs, %d live blocks (%s) copied into %d new packs; the next gc frees %s\n",
			len(r.Packs), r.LiveBlobs, size(r.LiveBytes), r.NewPacks, size(r.GarbageBytes+r.LiveBytes))
	}
	if in.DryRun {
		fmt.Fprintln(a.out, "dry run: nothing was changed")
		return nil
	}
	fmt.Fprintf(a.out, "sweep: %d packs deleted, %s freed; %d candidates referenced again and kept, %d not due yet, %d stale checkpoints removed\n",
		s.DeletedPacks, size(s.FreedBytes), s.Referenced, s.NotDue, s.StaleCheckpoints)
	if s.Locked > 0 {
		fmt.Fprintf(a.out, "sweep: %d unreferenced packs are under S3 object lock until %s at the latest: kept, a later gc deletes them\n",
			s.Locked, s.LockedUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// printLastGC adds what the last garbage collection freed to vault stats.
func (a *app) printLastGC(last *vault.GCSweepReport) {
	if last == nil {
		fmt.Fprintln(a.out, "last gc: never ('vmvault vault gc' frees unreferenced packs)")
		return
	}
	fmt.Fprintf(a.out, "last gc: %s: %s returned (%d packs deleted)\n", last.SweptAt.UTC().Format(time.RFC3339), size(last.FreedBytes), last.DeletedPacks)
}
