package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/workflows"
)

type restoreFlags struct {
	host    string
	wait    bool
	newVM   string
	replace bool
	target  string
	dir     string
	force   bool
	discard bool
	vault   bool
	second  bool
	timeout time.Duration
}

func (a *app) restoreCmd() *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore RP (--new-vm NAME | --replace [--vm NAME] | --disks DIR)",
		Short: "Restore a recovery point to a new VM, over a stopped VM, or as disk images",
		Long: `Start a restore job of recovery point RP (VM/ID, or ID) in one of three ways:
  --new-vm NAME      create a new VM of that name
  --replace          replace the disks of the recovery point's own VM, which
                     must be stopped; --vm NAME picks another stopped VM
  --disks DIR        write DIR/<disk>.raw image files only
A --new-vm restore of a recovery point whose backup ran with --keep-snapshot
is instant when its kept image is still on this host: the new VM's disks
are qcow2 overlays on the kept image, made in seconds, and nothing is read
from the vault (the job says so); otherwise, or with --from-vault, the vault
is read.
A restore never makes things worse: disks are written beside their targets,
every block verified against its id, synced, and only when every disk is
staged are they renamed into place (vm.json last). A failed restore removes
what it staged and leaves the target as it was; --replace keeps the replaced
images beside the new ones (<file>.replaced-<time>) unless --discard-replaced.
--disks refuses the platform's VM folders and existing files (unless --force),
and never follows symlinks. Without --wait it prints the job and returns;
with --wait it shows progress on stderr.`,
		Example: `  # list what there is to restore
  vmvault rp list web01

  # a copy of web01 next to the original
  vmvault restore web01/20261121T233345Z-9f6fd2 --new-vm web01-restored --wait

  # roll web01 back in place (stop it first)
  vmvault restore web01/20261121T233345Z-9f6fd2 --replace --wait

  # only the disk images, for inspection or another hypervisor
  vmvault restore web01/20261121T233345Z-9f6fd2 --disks /srv/restore --wait --json`,
		Args: oneArg("one recovery point (VM/ID or ID)"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("host") {
				f.host = a.cfg.Host
			}
			if !cmd.Flags().Changed("timeout") {
				f.timeout = a.cfg.RestoreTimeout
			} else if err := positive(cmd, "timeout", f.timeout); err != nil {
				return err
			}
			in, err := a.restoreInput(cmd, args[0], f)
			if err != nil {
				return err
			}
			return a.restore(ctx, in, f)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.host, "host", "", "host that receives the restore (default $VMVAULT_HOST, local)")
	fl.BoolVar(&f.wait, "wait", false, "wait for the job and show its progress")
	fl.StringVar(&f.newVM, "new-vm", "", "restore to a new VM of this name")
	fl.BoolVar(&f.replace, "replace", false, "replace the disks of an existing stopped VM (default: the recovery point's VM)")
	fl.StringVar(&f.target, "vm", "", "with --replace: the VM whose disks to replace")
	fl.StringVar(&f.dir, "disks", "", "restore the disk images only, into this directory")
	fl.BoolVar(&f.force, "force", false, "with --disks: replace existing image files")
	fl.BoolVar(&f.discard, "discard-replaced", false, "with --replace: delete the replaced disk images instead of keeping them")
	fl.BoolVar(&f.vault, "from-vault", false, "with --new-vm: read the vault even when the snapshot is kept on the host")
	fl.BoolVar(&f.second, "from-secondary", false, "read the recovery point from the vault's secondary location (VMVAULT_SECONDARY_VAULT on the workers): cross-site restore")
	fl.DurationVar(&f.timeout, "timeout", 0, "limit for the whole job (default $VMVAULT_RESTORE_TIMEOUT, 24h)")
	return a.jsonFlag(cmd)
}

// restoreInput checks that exactly one restore mode was asked for.
func (a *app) restoreInput(cmd *cobra.Command, rp string, f restoreFlags) (workflows.RestoreVMInput, error) {
	in := workflows.RestoreVMInput{RecoveryPoint: rp, Host: f.host, HeartbeatTimeout: a.cfg.HeartbeatTimeout, Limit: f.timeout}
	modes := 0
	if f.newVM != "" {
		modes++
		in.Mode, in.TargetVM = workflows.RestoreNewVM, f.newVM
	}
	if f.replace {
		modes++
		in.Mode, in.TargetVM = workflows.RestoreReplace, f.target
	}
	if f.dir != "" {
		modes++
		abs, err := filepath.Abs(f.dir)
		if err != nil {
			return in, err
		}
		in.Mode, in.TargetDir = workflows.RestoreDisks, abs
	}
	if modes != 1 {
		return in, usagef(cmd, "restore needs exactly one of --new-vm NAME, --replace, --disks DIR")
	}
	if f.target != "" && !f.replace {
		return in, usagef(cmd, "--vm goes with --replace")
	}
	if f.discard && !f.replace {
		return in, usagef(cmd, "--discard-replaced goes with --replace")
	}
	if f.force && f.dir == "" {
		return in, usagef(cmd, "--force goes with --disks")
	}
	if f.vault && f.newVM == "" {
		return in, usagef(cmd, "--from-vault goes with --new-vm")
	}
	in.Force, in.DiscardReplaced, in.FromVault, in.FromSecondary = f.force, f.discard, f.vault, f.second
	return in, nil
}

func (a *app) restore(ctx context.Context, in workflows.RestoreVMInput, f restoreFlags) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	opts := workflows.RestoreStartOptions(a.cfg.TaskQueue, in, time.Now(), f.timeout)
	run, err := c.ExecuteWorkflow(ctx, opts, workflows.RestoreVM, in)
	if err != nil {
		return fmt.Errorf("start restore of %s: %w", in.RecoveryPoint, err)
	}
	if !f.wait {
		return a.started("restore", run)
	}
	fmt.Fprintf(a.errOut, "restore job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.RestoreVMResult
	if err := a.watch(ctx, c, run, &res); err != nil {
		return jobError{what: "restore of " + in.RecoveryPoint + " failed", err: err}
	}
	if a.json {
		return a.printJSON(res)
	}
	var written int64
	for _, d := range res.Disks {
		written += d.Result.WrittenBytes
	}
	switch {
	case res.Instant != nil:
		fmt.Fprintf(a.out, "restored %s to vm %s: instant restore from the kept snapshot on host %s: no data read from the vault (its %d disks are qcow2 overlays on the kept image, which is kept while they use it)\n",
			res.RecoveryPoint, res.VM, res.Instant.Host, len(res.Disks))
	case res.Mode == workflows.RestoreDisks:
		fmt.Fprintf(a.out, "restored %s: %d disks into %s (%s written, every block verified)\n", res.RecoveryPoint, len(res.Disks), in.TargetDir, size(written))
	default:
		fmt.Fprintf(a.out, "restored %s to vm %s: %d disks (%s written, every block verified)\n", res.RecoveryPoint, res.VM, len(res.Disks), size(written))
	}
	shown := map[string]bool{}
	for _, d := range res.Disks {
		if kept := res.Kept[d.Disk]; kept != "" {
			line := fmt.Sprintf("disk %s: the replaced image is kept at %s", d.Disk, kept)
			fmt.Fprintln(a.out, line)
			shown[line] = true
		}
	}
	for _, n := range res.Notes {
		if !shown[n] && (res.Instant == nil || !strings.HasPrefix(n, "instant restore")) {
			fmt.Fprintf(a.out, "note: %s\n", n)
		}
	}
	return nil
}
