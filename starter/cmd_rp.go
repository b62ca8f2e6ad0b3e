package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/infra/platform"
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
	ID           string               `json:"id"`
	VM           string               `json:"vm"`
	Time         time.Time            `json:"time"`
	Type         vault.BackupType     `json:"type"`
	Consistency  platform.Consistency `json:"consistency"`
	LogicalBytes int64                `json:"logical_bytes"`
	Totals       vault.DiskStats      `json:"totals"`
	Parent       string               `json:"parent,omitempty"`
	Job          string               `json:"job"`
}

func rpRowOf(rp vault.RecoveryPoint) rpRow {
	var logical int64
	for _, d := range rp.Disks {
		logical += d.SizeBytes
	}
	return rpRow{ID: rp.Ref(), VM: rp.VM, Time: rp.CompletedAt, Type: rp.Type, Consistency: platform.Consistency(rp.Consistency),
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

func (a *app) rpDeleteCmd() *cobra.Command {
	return a.jsonFlag(&cobra.Command{
		Use:   "delete RP",
		Short: "Soft-delete a recovery point: undo with 'rp undelete' within the soft-delete period",
		Long: `Soft-delete recovery point RP (VM/ID, or ID): it is no longer listed or
restorable, but its data stays in the vault for the soft-delete period
(VMVAULT_SOFT_DELETE_DAYS, 14 days), during which 'vmvault rp undelete RP'
brings it back. After that the retention run purges it and the next garbage
collection frees the space only it used. Works on the vault directly; no
Temporal server is needed.`,
		Example: `  vmvault rp delete web01/20261121T233344Z-cfda7c
  vmvault rp list web01 --deleted`,
		Args: oneArg("one recovery point (VM/ID or ID)"),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, args []string) error {
			v, err := openVault(ctx, a.cfg)
			if err != nil {
				return err
			}
			dp, err := v.DeleteRecoveryPoint(ctx, args[0], time.Now(), a.cfg.SoftDeletePeriod())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(deletedRowOf(dp))
			}
			fmt.Fprintf(a.out, "deleted recovery point %s; 'vmvault rp undelete %s' restores it until %s\n",
				dp.Ref(), dp.Ref(), dp.PurgeAfter.UTC().Format(time.RFC3339))
			return nil
		}),
	})
}

func (a *app) rpUndeleteCmd() *cobra.Command {
	return a.jsonFlag(&cobra.Command{
		Use:   "undelete RP",
		Short: "Bring back a soft-deleted recovery point",
		Long: `Undelete recovery point RP (VM/ID, or ID), deleted by 'vmvault rp delete' or by
retention, while its soft-delete period lasts: it is listed and restorable
again, exactly as before. A point the retention run purges again if its
policy still expires it: pause the retention schedule first to keep it.`,
		Example: `  vmvault rp list --deleted
  vmvault rp undelete web01/20261121T233344Z-cfda7c`,
		Args: oneArg("one recovery point (VM/ID or ID)"),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, args []string) error {
			v, err := openVault(ctx, a.cfg)
			if err != nil {
				return err
			}
			rp, err := v.UndeleteRecoveryPoint(ctx, args[0], time.Now())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(rpRowOf(rp))
			}
			fmt.Fprintf(a.out, "undeleted recovery point %s\n", rp.Ref())
			return nil
		}),
	})
}

type deletedRow struct {
	rpRow
	DeletedAt  time.Time `json:"deleted_at"`
	PurgeAfter time.Time `json:"purge_after"`
}

func deletedRowOf(dp vault.DeletedPoint) deletedRow {
	return deletedRow{rpRow: rpRowOf(dp.RecoveryPoint), DeletedAt: dp.DeletedAt, PurgeAfter: dp.PurgeAfter}
}

// rpListDeleted lists soft-deleted recovery points.
func (a *app) rpListDeleted(ctx context.Context, vm string) error {
	v, err := a.openVaultOrSecondary(ctx)
	if err != nil {
		return err
	}
	dps, err := v.ListDeleted(ctx, vm)
	if err = a.warnCorrupt(err); err != nil {
		return err
	}
	rows := make([]deletedRow, len(dps))
	for i, dp := range dps {
		rows[i] = deletedRowOf(dp)
	}
	if a.json {
		return a.printJSON(rows)
	}
	tw := a.table("RECOVERY POINT\tTIME\tTYPE\tDELETED\tUNDELETE UNTIL\tDATA")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Time.Format(time.RFC3339), r.Type,
			r.DeletedAt.UTC().Format(time.RFC3339), r.PurgeAfter.UTC().Format(time.RFC3339), size(r.Totals.DataBytes))
	}
	return tw.Flush()
}
