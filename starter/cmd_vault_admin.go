package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"

	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) vaultPasswdCmd() *cobra.Command {
	var newKeyFile string
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "Change the vault key without rewriting any data",
		Long: `Re-wrap the vault's master key under a new passphrase or key file. No data
is rewritten: every recovery point opens with the new key, and the old key
stops working. The current key comes from VMVAULT_VAULT_PASSPHRASE or
VMVAULT_VAULT_KEY_FILE; the new one from VMVAULT_NEW_VAULT_PASSPHRASE or
--new-key-file (at least 12 bytes). Update every worker's key setting after
the change: a worker started with the old key refuses to start.`,
		Example: `  # rotate a key file
  head -c 32 /dev/urandom | base64 > new.key
  vmvault vault passwd --new-key-file new.key

  # from a passphrase to another
  VMVAULT_NEW_VAULT_PASSPHRASE='correct horse battery staple' vmvault vault passwd`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			newCfg := config.Config{Passphrase: a.cfg.NewPassphrase, KeyFile: newKeyFile}
			if newCfg.Passphrase == "" && newCfg.KeyFile == "" {
				return usagef(cmd, "give the new key with VMVAULT_NEW_VAULT_PASSPHRASE or --new-key-file")
			}
			return a.vaultPasswd(ctx, newCfg)
		}),
	}
	cmd.Flags().StringVar(&newKeyFile, "new-key-file", "", "file holding the new vault key")
	return cmd
}

func (a *app) vaultPasswd(ctx context.Context, newCfg config.Config) error {
	oldSecret, err := a.cfg.Secret()
	if err != nil {
		return err
	}
	newSecret, err := newCfg.Secret()
	if err != nil {
		return fmt.Errorf("new vault key: %w", err)
	}
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	if err := v.ChangeKey(ctx, oldSecret, newSecret, vault.KeyOptions{}); err != nil {
		if errors.Is(err, vault.ErrWrongKey) {
			return fmt.Errorf("vault at %s: %w: the current key does not open it", v.Location(), err)
		}
		return err
	}
	fmt.Fprintf(a.out, "vault %s at %s: key changed; no data was rewritten. Give every worker the new key.\n", v.Config().ID, v.Location())
	return nil
}

func (a *app) vaultCheckCmd() *cobra.Command {
	var readData, secondary bool
	var subset string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify that every recovery point can be restored",
		Long: `Run a vault check job (visible in the Temporal UI as vault-check-<time>) and
wait for it: every recovery point's manifest decodes, every disk's block map
is complete, every block is indexed in a pack that is stored with the right
size. --read-data also re-reads, decrypts and re-hashes every block;
--read-data-subset N% only the blocks in N% of the packs (a different share
each run). Damage is listed by VM, recovery point, disk and offset; the exit
code is 1 when anything is damaged. The check writes only to quarantine a
pack in which a block fails verification: no backup deduplicates against it
from then on, its sound blobs are copied into a new pack, and the next
backup of each damaged VM stores the damaged blocks again from its disk.
A check of the secondary never writes: 'vmvault vault repair --secondary'
replaces the damaged copies it finds with the primary's verified ones.`,
		Example: `  # metadata and index: fast, run it daily
  vmvault vault check

  # re-read a tenth of the data each night: the whole vault every ten days
  vmvault vault check --read-data-subset 10%

  # everything, as JSON for monitoring
  vmvault vault check --read-data --json

  # the secondary's copy, every block, then heal what is damaged there
  vmvault vault check --secondary --read-data || vmvault vault repair --secondary`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			in := workflows.CheckVaultInput{ReadData: readData, HeartbeatTimeout: a.cfg.HeartbeatTimeout, Seed: uint64(time.Now().UnixNano()), Secondary: secondary}
			if subset != "" {
				n, err := strconv.Atoi(strings.TrimSuffix(subset, "%"))
				if err != nil || n < 1 || n > 100 {
					return usagef(cmd, "--read-data-subset %q: want a percentage from 1%% to 100%%", subset)
				}
				in.ReadData, in.ReadDataPercent = true, n
			}
			return a.vaultCheck(ctx, in)
		}),
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "re-read and re-hash every block")
	cmd.Flags().StringVar(&subset, "read-data-subset", "", "re-read and re-hash the blocks of N% of the packs, e.g. 10%")
	cmd.Flags().BoolVar(&secondary, "secondary", false, "check the vault's copy at its secondary location, then compare it with the primary object by object")
	return a.jsonFlag(cmd)
}

func (a *app) vaultCheck(ctx context.Context, in workflows.CheckVaultInput) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	run, err := c.ExecuteWorkflow(ctx, workflows.CheckVaultStartOptions(a.cfg.TaskQueue, in, time.Now()), workflows.CheckVault, in)
	if err != nil {
		return fmt.Errorf("start vault check: %w", err)
	}
	fmt.Fprintf(a.errOut, "vault check job %s (run %s)\n", run.GetID(), run.GetRunID())
	var rep vault.CheckReport
	if err := run.Get(ctx, &rep); err != nil {
		return jobError{what: "vault check failed", err: err}
	}
	var cmp *vault.Comparison
	if in.Secondary {
		c, err := a.compareSecondary(ctx)
		if err != nil {
			return err
		}
		cmp = &c
	}
	if a.json {
		if err := a.printJSON(checkJSON{rep, cmp}); err != nil {
			return err
		}
	} else {
		a.printCheck(rep)
		if cmp != nil {
			a.printComparison(*cmp)
		}
	}
	if !rep.OK {
		hint := ""
		if in.Secondary {
			hint = "; 'vmvault vault repair --secondary' replaces the damaged copies with the primary's verified ones"
		}
		return fmt.Errorf("vault %s is damaged: %d of %d recovery points cannot be fully restored (%s)%s",
			rep.Vault, len(rep.Damaged), rep.RecoveryPoints, strings.Join(rep.Damaged, ", "), hint)
	}
	return nil
}

func (a *app) printCheck(rep vault.CheckReport) {
	fmt.Fprintf(a.out, "vault %s: %d recovery points, %d disks, %d block references, %d packs checked; %s read\n",
		rep.Vault, rep.RecoveryPoints, rep.Disks, rep.Blocks, rep.Packs, size(rep.BytesRead))
	for _, p := range rep.IndexProblems {
		fmt.Fprintf(a.out, "index: %s\n", p)
	}
	for _, m := range rep.CorruptManifests {
		fmt.Fprintf(a.out, "manifest: %+v\n", m)
	}
	if len(rep.UnindexedPacks) > 0 {
		fmt.Fprintf(a.out, "%d packs have no index object (interrupted backups, or run 'vmvault vault repair')\n", len(rep.UnindexedPacks))
	}
	for _, d := range rep.Damage {
		fmt.Fprintf(a.out, "damaged: %s/%s disk %s offset %d: %s %s: %s\n", d.VM, d.RecoveryPoint, d.Disk, d.Offset, d.Kind, d.Blob.Short(), d.Reason)
	}
	if rep.DamageOmitted > 0 {
		fmt.Fprintf(a.out, "... and %d more damaged pieces\n", rep.DamageOmitted)
	}
	for _, q := range rep.Quarantined {
		a.printQuarantine(q)
	}
	if n := rep.QuarantinedPacks - len(rep.Quarantined); n > 0 {
		fmt.Fprintf(a.out, "%d packs were already in quarantine\n", n)
	}
	if rep.OK {
		fmt.Fprintln(a.out, "every recovery point can be restored")
	}
}

func (a *app) vaultRepairCmd() *cobra.Command {
	var secondary bool
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Rebuild the vault's index from its packs, or heal the secondary",
		Long: `Run the vault repair job (vault-repair in the Temporal UI) and wait for it:
every pack without a valid index object is read whole, verified (its header
authenticates, every block hashes to its id) and indexed again; index objects
of packs that are gone are removed, so the next backup of each VM uploads
what was lost instead of trusting it. Packs that fail verification are
quarantined: no backup deduplicates against them, their sound blobs are
copied into new packs, and the recovery points they damage are named.
Run 'vmvault vault check' afterwards: recovery points that referenced lost
data stay damaged until the next backup of their VM stores it again.

With --secondary (vault-repair-secondary in the Temporal UI) it heals the
vault's copy at the secondary location instead: every pack, index object,
manifest and tombstone there is read and verified, as 'vault check
--secondary --read-data' does, and each copy that fails is replaced with the
primary's copy, once that copy is read and verified intact. A copy damaged on
the primary too, missing there, or that the secondary refuses to overwrite
(an object lock) is listed with both verdicts and left alone; the exit code
is then 1. Intact copies are never written.`,
		Example: `  vmvault vault repair
  vmvault vault check && vmvault vault repair --json

  # the secondary: find the damage, heal it, check again
  vmvault vault check --secondary --read-data || vmvault vault repair --secondary`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			if secondary {
				return a.vaultRepairSecondary(ctx)
			}
			return a.vaultRepair(ctx)
		}),
	}
	cmd.Flags().BoolVar(&secondary, "secondary", false, "heal the vault's copy at its secondary location from the primary's verified copies")
	return a.jsonFlag(cmd)
}

func (a *app) vaultRepair(ctx context.Context) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	in := workflows.RepairVaultInput{HeartbeatTimeout: a.cfg.HeartbeatTimeout}
	run, err := c.ExecuteWorkflow(ctx, workflows.RepairVaultStartOptions(a.cfg.TaskQueue), workflows.RepairVault, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("a vault repair is already running (job %s, run %s)", workflows.RepairVaultWorkflowID, started.RunId)
	}
	if err != nil {
		return fmt.Errorf("start vault repair: %w", err)
	}
	fmt.Fprintf(a.errOut, "vault repair job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.RepairVaultResult
	if err := run.Get(ctx, &res); err != nil {
		return jobError{what: "vault repair failed", err: err}
	}
	rep := res.RepairReport
	if a.json {
		return a.printJSON(rep)
	}
	fmt.Fprintf(a.out, "%d packs: %d re-indexed, %d index objects of missing packs removed, %d packs failed verification\n",
		rep.Packs, len(rep.Reindexed), len(rep.RemovedIndex), len(rep.BadPacks))
	for _, k := range rep.RemovedIndex {
		fmt.Fprintf(a.out, "removed %s: its pack is gone; the next backups upload its blocks again\n", k)
	}
	for _, p := range rep.BadPacks {
		fmt.Fprintf(a.out, "bad pack %s: %s\n", p.Key, p.Reason)
	}
	for _, q := range rep.Quarantined {
		a.printQuarantine(q)
	}
	if len(rep.DamagedPoints) > 0 {
		fmt.Fprintf(a.out, "damaged recovery points: %s (the next backup of their VMs stores the damaged blocks again)\n", strings.Join(rep.DamagedPoints, ", "))
	}
	return nil
}

// vaultRepairSecondary is 'vault repair --secondary': the heal of the
// secondary's damaged copies from the primary's verified ones.
func (a *app) vaultRepairSecondary(ctx context.Context) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	in := workflows.RepairVaultInput{HeartbeatTimeout: a.cfg.HeartbeatTimeout, Secondary: true}
	run, err := c.ExecuteWorkflow(ctx, workflows.RepairSecondaryStartOptions(a.cfg.TaskQueue), workflows.RepairVault, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("a repair of the secondary is already running (job %s, run %s)", workflows.RepairSecondaryWorkflowID, started.RunId)
	}
	if err != nil {
		return fmt.Errorf("start vault repair --secondary: %w", err)
	}
	fmt.Fprintf(a.errOut, "vault repair job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.RepairVaultResult
	if err := run.Get(ctx, &res); err != nil {
		return jobError{what: "vault repair --secondary failed", err: err}
	}
	if res.Secondary == nil {
		return errors.New("vault repair --secondary: the job returned no report of the secondary (is the worker older than this command?)")
	}
	rep := *res.Secondary
	if a.json {
		if err := a.printJSON(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.out, "secondary %s: %d objects (%s) verified; %d damaged, %d replaced with the primary's intact copy\n",
			rep.Target, rep.Objects, size(rep.Bytes), rep.DamagedCount, rep.Healed)
		for _, d := range rep.Damaged {
			fmt.Fprintf(a.out, "  %s\n", d)
		}
		if n := rep.DamagedCount - len(rep.Damaged); n > 0 {
			fmt.Fprintf(a.out, "  ... and %d more\n", n)
		}
	}
	if rep.Kept() > 0 {
		return fmt.Errorf("%d damaged copies on the secondary %s were kept (see above): nothing was copied over them", rep.Kept(), rep.Target)
	}
	return nil
}

// printQuarantine says which pack was quarantined and what was saved of it.
func (a *app) printQuarantine(q vault.QuarantineReport) {
	fmt.Fprintf(a.out, "quarantined pack %s: %d damaged blocks, %d sound blobs copied into %d new packs; no backup deduplicates against it now\n",
		q.Pack.Short(), len(q.Damaged), q.Salvaged, q.NewPacks)
}

// checkJSON is 'vault check --json': the report, and with --secondary the
// comparison with the primary.
type checkJSON struct {
	vault.CheckReport
	Comparison *vault.Comparison `json:"comparison,omitempty"`
}
