package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
)

// refuseShorterRetention: an immutable vault refuses a policy update that
// keeps fewer points of any kind (Azure's immutable vaults refuse to
// reduce retention). Deletes are refused by the vault anyway; this says so
// where the operator asked for it.
func refuseShorterRetention(ctx context.Context, v *vault.Vault, name string, old, new policy.Retention) error {
	if err := v.ReloadConfig(ctx); err != nil {
		return err
	}
	im := v.Config().Immutable
	if im == nil {
		return nil
	}
	var shorter []string
	for _, r := range []struct {
		what     string
		old, new int
	}{{"daily", old.Daily, new.Daily}, {"weekly", old.Weekly, new.Weekly}, {"monthly", old.Monthly, new.Monthly}, {"yearly", old.Yearly, new.Yearly}} {
		if r.new < r.old {
			shorter = append(shorter, fmt.Sprintf("%s %d -> %d", r.what, r.old, r.new))
		}
	}
	if len(shorter) == 0 {
		return nil
	}
	return fmt.Errorf("policy %s: retention cannot be shortened in an immutable vault (%s): %w", name, strings.Join(shorter, ", "), vault.ErrImmutable)
}
