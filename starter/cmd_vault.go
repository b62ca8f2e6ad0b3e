package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/infra/billing"
	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
)

func (a *app) vaultCmd() *cobra.Command {
	return group("vault", "Create, inspect, check, repair, re-key, replicate and lock a vault", a.vaultInitCmd(), a.vaultStatsCmd(), a.vaultCheckCmd(), a.vaultRepairCmd(), a.vaultPasswdCmd(), a.vaultGCCmd(), a.vaultCheckScheduleCmd(),
		a.vaultReplicateCmd(), a.vaultSetImmutableCmd())
}

func (a *app) vaultInitCmd() *cobra.Command {
	var opt vault.InitOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new, empty vault",
		Long: `Create a new, empty vault where --vault (VMVAULT_VAULT) points, sealed with the
vault key (VMVAULT_VAULT_PASSPHRASE or VMVAULT_VAULT_KEY_FILE). An s3:// vault's
bucket is created if it is missing. The settings are fixed for the vault's life.`,
		Example: `  # the embedded default: file://$VMVAULT_DATA_DIR/vault
  vmvault vault init

  # a vault in MinIO or any S3, with zstd for smaller storage at ~2x the CPU
  VMVAULT_S3_ENDPOINT=http://minio:9000 VMVAULT_S3_PATH_STYLE=true \
    vmvault vault init --vault s3://backups/vmvault --compression zstd

  # larger blocks for VMs with big sequential writes
  vmvault vault init --vault file:///srv/vault --block-size 4194304`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			return a.vaultInit(ctx, opt)
		}),
	}
	f := cmd.Flags()
	f.IntVar(&opt.BlockSize, "block-size", vault.DefaultBlockSize, "block size in bytes (power of two, 64 KiB to 8 MiB)")
	f.IntVar(&opt.PackSize, "pack-size", vault.DefaultPackSize, "target pack size in bytes")
	f.StringVar(&opt.Compression, "compression", vault.CompressionS2, "block compression: s2 (fast, default), zstd (smaller, ~2x slower) or none")
	f.IntVar(&opt.LeafEntries, "leaf-blocks", vault.DefaultLeafEntries, "blocks per block-map leaf: the unit of metadata sharing and of resuming an interrupted transfer")
	return a.jsonFlag(cmd)
}

func (a *app) vaultInit(ctx context.Context, opt vault.InitOptions) error {
	v, err := initVault(ctx, a.cfg, opt)
	if err != nil {
		return err
	}
	c := v.Config()
	if a.json {
		return a.printJSON(map[string]any{"vault": v.Location(), "id": c.ID, "block_size": c.BlockSize, "pack_size": c.PackSize})
	}
	fmt.Fprintf(a.out, "created vault %s at %s (block size %s, pack size %s, AES-256-GCM, %s)\n", c.ID, v.Location(), size(int64(c.BlockSize)), size(int64(c.PackSize)), c.Compression)
	return nil
}

func (a *app) vaultStatsCmd() *cobra.Command {
	return a.jsonFlag(&cobra.Command{
		Use:   "stats",
		Short: "Show each VM's recovery points and the storage the vault uses",
		Long: `Show, per VM, its recovery points, its protected-instance size (the data on its
disks, temp disk excluded, in its latest recovery point), what its backups
uploaded and stored, and its billing basis as Azure Backup defines it:
whether it is protected and billable (from its first successful backup
until protection is stopped and all its backup data deleted), its count of
protected instances (1 up to 50 GB, at half price; 1 up to 500 GB; then
1 per started 500 GB) and its storage basis (what its recovery points
stored); then the storage the whole vault really uses.`,
		Example: `  vmvault vault stats
  vmvault vault stats --vault s3://backups/vmvault --json`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, _ []string) error {
			return a.vaultStats(ctx)
		}),
	})
}

func (a *app) vaultStats(ctx context.Context) error {
	v, err := openVault(ctx, a.cfg)
	if err != nil {
		return err
	}
	rps, err := v.ListRecoveryPoints(ctx, "")
	if err = a.warnCorrupt(err); err != nil {
		return err
	}
	u, err := v.Usage(ctx)
	if err != nil {
		return err
	}
	protected, err := v.ListRecords(ctx, policy.RecordProtection)
	if err != nil {
		return err
	}
	dps, err := v.ListDeleted(ctx, "")
	if err = a.warnCorrupt(err); err != nil {
		return err
	}
	list := billing.With(billing.ByVM(rps), protected, dps)
	lastGC, err := v.Maint().LastGC(ctx)
	if err != nil {
		return err
	}
	repl, err := a.replicationStatus(ctx, v)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(map[string]any{"vault": v.Location(), "vms": list, "usage": u, "last_gc": lastGC, "replication": repl,
			"immutable": v.Config().Immutable})
	}
	fmt.Fprintf(a.out, "vault %s (%s)\n\n", v.Location(), v.Config().ID)
	tw := a.table("VM\tRECOVERY POINTS\tLATEST\tPROTECTED SIZE\tUPLOADED\tSTORED\tPROTECTED\tBILLABLE\tINSTANCES\tSTORAGE BASIS")
	for _, s := range list {
		b := s.Billing
		inst := "-"
		if b.Billable {
			inst = fmt.Sprintf("%d (%s)", b.Instances, b.InstanceClass)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.VM, s.RecoveryPoints, s.Latest, size(s.ProtectedBytes), size(s.NewBytes), size(s.StoredBytes),
			yesNo(b.Protected), yesNo(b.Billable), inst, size(b.StorageBasis))
	}
	tw.Flush()
	instances, basis := billing.Total(list)
	fmt.Fprintf(a.out, "\nbilling basis: %d billable instances, storage basis %s; real storage after dedup and compression %s\n",
		instances, size(basis), size(u.TotalBytes))
	fmt.Fprintf(a.out, "\nstorage used: %s in %d packs, %s index, %d recovery points (%s)\n",
		size(u.TotalBytes), u.Packs, size(u.IndexBytes), u.RecoveryPoints, size(u.ManifestBytes))
	a.printLastGC(lastGC)
	if im := v.Config().Immutable; im != nil {
		fmt.Fprintf(a.out, "\n%s\n", im)
	}
	a.printReplication(repl)
	return nil
}
