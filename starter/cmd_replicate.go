package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/wire"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) vaultReplicateCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "replicate",
		Short: "Copy the vault's new objects to its secondary location",
		Long: `Start the vault's replication job (replicate-<vault id> in the Temporal UI), or
ask the running one for another pass: it copies, as stored, every object
the secondary (VMVAULT_SECONDARY_VAULT on the workers) lacks: the config,
then packs and index objects, recovery point manifests last, so the
secondary never holds a point whose data is missing. Nothing on the
secondary is overwritten: an object it holds differently is a conflict,
reported with which copy verified as intact, and an object of the primary
that fails verification is not copied. Every backup asks for
a pass by itself; run this after the secondary was unreachable, or to wait
until it is in sync. Objects deleted on the primary (by GC or soft delete)
are deleted on the secondary only after the soft-delete period
(VMVAULT_SOFT_DELETE_DAYS); objects the primary merely lost are kept.`,
		Example: `  vmvault vault replicate --wait
  vmvault vault stats    # replication lag per VM`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			return a.vaultReplicate(ctx, wait)
		}),
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the replication and print what it did")
	return a.jsonFlag(cmd)
}

func (a *app) vaultReplicate(ctx context.Context, wait bool) error {
	if a.cfg.SecondaryVault == "" {
		return wire.ErrNoSecondary
	}
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	id := v.Config().ID
	run, err := c.SignalWithStartWorkflow(ctx, workflows.ReplicateWorkflowID(id), workflows.SignalReplicate, "vmvault vault replicate",
		workflows.ReplicateStartOptions(a.cfg.TaskQueue, id), workflows.ReplicateVault,
		workflows.ReplicateVaultInput{HeartbeatTimeout: a.cfg.HeartbeatTimeout})
	if err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	fmt.Fprintf(a.errOut, "replication job %s (run %s)\n", run.GetID(), run.GetRunID())
	if !wait {
		return nil
	}
	var res workflows.ReplicateVaultResult
	if err := a.watch(ctx, c, run, &res); err != nil {
		return jobError{what: "replication failed", err: err}
	}
	if a.json {
		return a.printJSON(res)
	}
	r := res.Last
	rate := 0.0
	if r.Duration > 0 {
		rate = float64(r.CopiedBytes) / r.Duration
	}
	fmt.Fprintf(a.out, "replicated %s to %s: %d recovery points; copied %d of %d objects (%s) in %.1fs, %s/s; %d deleted, %d deletes wait for the soft-delete period\n",
		r.Source, r.Target, r.RecoveryPoints, r.Copied+r.CopiedBefore, r.Objects, size(r.CopiedBytes+r.BytesBefore), r.Duration, size(int64(rate)), r.Deleted, r.PendingDeletes)
	if r.Attempts > 1 {
		fmt.Fprintf(a.out, "resumed: attempt %d copied %d objects after earlier attempts copied %d\n", r.Attempts, r.Copied, r.CopiedBefore)
	}
	a.printDamage(r.ReplicateReport)
	return nil
}

// printDamage says what a pass found damaged and left alone: conflicts
// (the secondary's copy kept unless proven damaged, then replaced with the
// primary's intact one), objects of the primary that failed
// verification (not copied), objects the primary lost (kept on the
// secondary), and why no data was deleted.
func (a *app) printDamage(r vault.ReplicateReport) {
	if r.ConflictCount > 0 {
		fmt.Fprintf(a.out, "%d conflicts: the secondary holds these objects differently; its copies are kept, never overwritten unless proven damaged while the primary's are intact:\n", r.ConflictCount)
		for _, c := range r.Conflicts {
			fmt.Fprintf(a.out, "  %s\n", c)
		}
		if more := r.ConflictCount - len(r.Conflicts); more > 0 {
			fmt.Fprintf(a.out, "  ... and %d more\n", more)
		}
	}
	if r.RefusedCount > 0 {
		fmt.Fprintf(a.out, "%d objects of the primary failed verification and were not copied (run 'vmvault vault check'):\n", r.RefusedCount)
		for _, f := range r.Refused {
			fmt.Fprintf(a.out, "  %s\n", f)
		}
		if more := r.RefusedCount - len(r.Refused); more > 0 {
			fmt.Fprintf(a.out, "  ... and %d more\n", more)
		}
	}
	if r.LostOnPrimary > 0 {
		fmt.Fprintf(a.out, "%d objects are gone from the primary without being deleted (damage there); the secondary keeps them: %s\n",
			r.LostOnPrimary, strings.Join(r.LostOnPrimaryKeys, " "))
	}
	if r.DeletesHeld != "" {
		fmt.Fprintf(a.out, "no data deleted from the secondary: %s\n", r.DeletesHeld)
	}
}

// replicationStatus is the replication lag per VM for vault stats; an
// unreachable secondary is a warning there, not a failed command.
func (a *app) replicationStatus(ctx context.Context, v *vault.Vault) (*vault.ReplicationStatus, error) {
	if a.cfg.SecondaryVault == "" {
		return nil, nil
	}
	be, err := wire.OpenSecondaryStorage(ctx, a.cfg)
	if err != nil {
		return nil, err
	}
	st, err := v.ReplicationStatus(ctx, be)
	if err != nil {
		fmt.Fprintf(a.errOut, "warning: replication lag unknown: %v\n", err)
		return nil, nil
	}
	return &st, nil
}

func (a *app) printReplication(st *vault.ReplicationStatus) {
	if st == nil {
		return
	}
	fmt.Fprintf(a.out, "\nsecondary %s: %d objects (%s) not replicated yet\n", st.Secondary, st.MissingObjects, size(st.MissingBytes))
	tw := a.table("VM\tRECOVERY POINTS\tNOT ON SECONDARY\tBYTES BEHIND\tOLDEST MISSING")
	for _, l := range st.VMs {
		oldest := "-"
		if l.Missing > 0 {
			oldest = l.Oldest.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", l.VM, l.RecoveryPoints, l.Missing, size(l.MissingBytes), oldest)
	}
	tw.Flush()
	if st.Conflicts > 0 {
		fmt.Fprintf(a.out, "%d objects differ between primary and secondary (conflicts: the secondary's copies are kept)\n", st.Conflicts)
	}
	if l := st.Last; l != nil {
		fmt.Fprintf(a.out, "last replication: %s: copied %d objects (%s) in %.1fs\n", l.At.UTC().Format(time.RFC3339), l.Copied, size(l.CopiedBytes), l.Duration)
		a.printDamage(*l)
	}
}

// compareSecondary compares the vault's storage with its secondary, object
// by object, after 'vault check --secondary'.
func (a *app) compareSecondary(ctx context.Context) (vault.Comparison, error) {
	pbe, err := wire.OpenStorage(ctx, a.cfg)
	if err != nil {
		return vault.Comparison{}, err
	}
	sbe, err := wire.OpenSecondaryStorage(ctx, a.cfg)
	if err != nil {
		return vault.Comparison{}, err
	}
	return vault.Compare(ctx, pbe, sbe)
}

func (a *app) printComparison(c vault.Comparison) {
	if c.Same() {
		fmt.Fprintf(a.out, "primary and secondary hold the same %d objects\n", c.Objects)
		return
	}
	list := func(what string, keys []string) {
		if len(keys) == 0 {
			return
		}
		shown := keys
		if len(shown) > 10 {
			shown = shown[:10]
		}
		more := ""
		if len(keys) > len(shown) {
			more = fmt.Sprintf(" ... and %d more", len(keys)-len(shown))
		}
		fmt.Fprintf(a.out, "%s: %d: %s%s\n", what, len(keys), strings.Join(shown, " "), more)
	}
	fmt.Fprintf(a.out, "primary %d objects; compared with secondary %s:\n", c.Objects, c.Secondary)
	list("only on the primary (not replicated yet)", c.OnlyPrimary)
	list("only on the secondary (deleted on the primary, or foreign)", c.OnlySecondary)
	list("different", c.Differ)
}
