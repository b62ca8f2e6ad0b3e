package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

func (a *app) vaultSetImmutableCmd() *cobra.Command {
	var days int
	var lock string
	cmd := &cobra.Command{
		Use:   "set-immutable --lock-days N [--object-lock governance|compliance]",
		Short: "Make the vault immutable: no recovery point can be deleted before it is N days old",
		Long: `Make the vault immutable, for good: the setting is recorded in the vault's
authenticated config and nothing unsets or shortens it. From then on every
recovery point, older ones included, is kept at least N days after it was
made: 'rp delete', 'unprotect --delete-data' and retention refuse to delete
it before then (retention keeps it and says so) and name the point and its
expiry. With --object-lock (an s3:// vault in a bucket created with Object
Lock enabled) packs, index objects and manifests are also written with an
S3 retention of N days in that mode, so even a direct delete with the
bucket's credentials fails until then; governance mode can be bypassed by
a principal with s3:BypassGovernanceRetention, compliance mode by nobody.
GC keeps locked packs until their lock ends. Workers pick the setting up at
their next backup or restore, without a restart.`,
		Example: `  vmvault vault set-immutable --lock-days 30
  vmvault vault set-immutable --lock-days 30 --object-lock compliance`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return usagef(cmd, "set-immutable needs --lock-days N (at least 1)")
			}
			switch lock {
			case "", storage.RetentionGovernance, storage.RetentionCompliance:
			default:
				return usagef(cmd, "--object-lock %q: want governance or compliance", lock)
			}
			v, err := openVault(ctx, a.cfg)
			if err != nil {
				return err
			}
			im, err := v.SetImmutable(ctx, vault.Immutability{Days: days, ObjectLock: lock, Since: time.Now()})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(im)
			}
			fmt.Fprintf(a.out, "vault %s at %s is %s\n", v.Config().ID, v.Location(), im)
			return nil
		}),
	}
	cmd.Flags().IntVar(&days, "lock-days", 0, "days every recovery point is kept (and its objects locked) after it was made")
	cmd.Flags().StringVar(&lock, "object-lock", "", "also lock objects with S3 Object Lock: governance or compliance")
	return a.jsonFlag(cmd)
}
