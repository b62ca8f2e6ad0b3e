package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/vault"
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
