package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/internal/vaulttest"
)

// A bare id that two VMs' points share names both VMs instead of claiming
// there is no such point; VM/ID picks one.
func TestResolveAmbiguousID(t *testing.T) {
	ctx := context.Background()
	v, be := vaulttest.NewRepo(t)
	const id = "20261121T233344Z-cfda7c"
	for _, vm := range []string{"web01", "db1"} {
		be.Objs[format.KindRecoveryPoint.Prefix()+vm+"/"+id] = []byte("x")
	}
	_, _, err := v.ResolveRef(ctx, id)
	if !errors.Is(err, format.ErrNoRecoveryPoint) || !strings.Contains(err.Error(), "each of vms db1, web01: give VM/ID") {
		t.Fatalf("ambiguous id: %v", err)
	}
	if vm, got, err := v.ResolveRef(ctx, "db1/"+id); err != nil || vm != "db1" || got != id {
		t.Fatalf("db1/%s: %s %s %v", id, vm, got, err)
	}
	if _, _, err := v.ResolveRef(ctx, "20200101T000000Z-000000"); !errors.Is(err, format.ErrNoRecoveryPoint) {
		t.Fatalf("unknown id: %v", err)
	}
}
