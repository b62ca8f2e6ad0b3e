package maint

import (
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// Consecutive seeds read consecutive shares: with 10%, seeds 0..9 read
// every pack exactly once (and 30% covers everything within 4 checks).
func TestCheckSubsetRotationCoversVault(t *testing.T) {
	for _, pct := range []int{10, 30} {
		runs := (100 + pct - 1) / pct
		seen := map[format.ID]int{}
		packs := make([]format.ID, 2000)
		for i := range packs {
			packs[i] = format.ID{byte(i), byte(i >> 8), byte(i * 7), byte(i * 13), 1}
		}
		for seed := range runs {
			c := &checker{opt: CheckOptions{ReadDataPercent: pct, Seed: uint64(1000*runs + seed)}}
			for _, p := range packs {
				if c.selected(p) {
					seen[p]++
				}
			}
		}
		for _, p := range packs {
			if seen[p] == 0 || pct == 10 && seen[p] != 1 {
				t.Fatalf("%d%%: pack %s read %d times in %d checks", pct, p.Short(), seen[p], runs)
			}
		}
	}
}
