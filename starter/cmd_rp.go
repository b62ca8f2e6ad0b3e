package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/infra/vault"
)

func (a *app) rpCmd() *cobra.Command {
	return group("rp", "List, delete and undelete recovery points", a.rpListCmd(), a.rpDeleteCmd(), a.rpUndeleteCmd())
}

func (a *app) rpListCmd() *cobra.Command {
	var deleted, secondary bool
	cmd := a.jsonFlag(&cobra.Command{
		Use:   "list [VM]",
		Short: "List the recovery points in the vault, of every VM or of one",
		Long: `List recovery points, oldest first, read from the vault itself (no Temporal
server needed). A recovery point that cannot be read is a warning on stderr,
so one damaged manifest does not hide the others. --deleted lists the
soft-deleted points instead, with when they were deleted and until when
'vmvault rp undelete' brings them back.`,
		Example: `  vmvault rp list
  vmvault rp list web01

  # the latest recovery point of web01, to restore
  vmvault rp list web01 --json | jq -r '.[-1].id'

  # what was deleted, and can still be undeleted
  vmvault rp list --deleted`,
		Args: maxOneArg("one VM name"),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, args []string) error {
			vm := ""
			if len(args) == 1 {
				vm = args[0]
			}
			a.fromSecondary = secondary
			if deleted {
				return a.rpListDeleted(ctx, vm)
			}
			return a.rpList(ctx, vm)
		}),
	})
	cmd.Flags().BoolVar(&deleted, "deleted", false, "list soft-deleted recovery points")
	cmd.Flags().BoolVar(&secondary, "from-secondary", false, "read the vault's copy at its secondary location (VMVAULT_SECONDARY_VAULT), e.g. when the primary is gone")
	return cmd
}

type rpRow struct {
	ID           string           `json:"id"`
	VM           string           `json:"vm"`
	Time         time.Time        `json:"time"`
	Type         vault.BackupType `json:"type"`
	Consistency  string           `json:"consistency"`
	LogicalBytes int64            `json:"logical_bytes"`
	Totals       vault.DiskStats  `json:"totals"`
	Parent       string           `json:"parent,omitempty"`
	Job          string           `json:"job"`
}

func rpRowOf(rp vault.RecoveryPoint) rpRow {
	var logical int64
	for _, d := range rp.Disks {
		logical += d.SizeBytes
	}
	return rpRow{ID: rp.Ref(), VM: rp.VM, Time: rp.CompletedAt, Type: rp.Type, Consistency: rp.Consistency,
		LogicalBytes: logical, Totals: rp.Totals(), Parent: rp.Parent, Job: rp.Job}
}

func (a *app) rpList(ctx context.Context, vm string) error {
	v, err := a.openVaultOrSecondary(ctx)
	if err != nil {
		return err
	}
	rps, err := v.ListRecoveryPoints(ctx, vm)
	if err = a.warnCorrupt(err); err != nil {
		return err
	}
	if vm != "" && len(rps) == 0 {
		return fmt.Errorf("vm %s has no recovery points in %s", vm, v.Location())
	}
	rows := make([]rpRow, len(rps))
	for i, rp := range rps {
		rows[i] = rpRowOf(rp)
	}
	if a.json {
		return a.printJSON(rows)
	}
	tw := a.table("RECOVERY POINT\tTIME\tTYPE\tCONSISTENCY\tLOGICAL\tDATA\tNEW\tSTORED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Time.Format(time.RFC3339), r.Type, r.Consistency,
			size(r.LogicalBytes), size(r.Totals.DataBytes), size(r.Totals.NewBytes), size(r.Totals.StoredBytes))
	}
	return tw.Flush()
}
