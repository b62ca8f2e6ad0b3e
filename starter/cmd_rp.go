package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/infra/vault"
)

func (a *app) rpCmd() *cobra.Command {
	return group("rp", "List recovery points", a.rpListCmd())
}

func (a *app) rpListCmd() *cobra.Command {
	return a.jsonFlag(&cobra.Command{
		Use:   "list [VM]",
		Short: "List the recovery points in the vault, of every VM or of one",
		Long: `List recovery points, oldest first, read from the vault itself (no Temporal
server needed). A recovery point that cannot be read is a warning on stderr,
so one damaged manifest does not hide the others.`,
		Example: `  vmvault rp list
  vmvault rp list web01

  # the latest recovery point of web01, to restore
  vmvault rp list web01 --json | jq -r '.[-1].id'`,
		Args: maxOneArg("one VM name"),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, args []string) error {
			vm := ""
			if len(args) == 1 {
				vm = args[0]
			}
			return a.rpList(ctx, vm)
		}),
	})
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

func (a *app) rpList(ctx context.Context, vm string) error {
	v, err := openVault(ctx, a.cfg)
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
		var logical int64
		for _, d := range rp.Disks {
			logical += d.SizeBytes
		}
		rows[i] = rpRow{ID: rp.Ref(), VM: rp.VM, Time: rp.CompletedAt, Type: rp.Type, Consistency: rp.Consistency,
			LogicalBytes: logical, Totals: rp.Totals(), Parent: rp.Parent, Job: rp.Job}
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
