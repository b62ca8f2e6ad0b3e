package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/internal/vaulttest"
)

type testRecord struct {
	VM     string   `json:"vm"`
	Policy string   `json:"policy"`
	Tags   []string `json:"tags"`
}

func TestRecordsRoundTrip(t *testing.T) {
	ctx := context.Background()
	v, be := vaulttest.NewRepo(t)
	want := testRecord{VM: "web01", Policy: "gold", Tags: []string{"a", "b"}}
	if err := v.PutRecord(ctx, "protection", "web01", want); err != nil {
		t.Fatal(err)
	}
	if err := v.PutRecord(ctx, "protection", "db1", testRecord{VM: "db1"}); err != nil {
		t.Fatal(err)
	}
	if err := v.PutRecord(ctx, "policies", "gold", map[string]int{"daily": 30}); err != nil {
		t.Fatal(err)
	}
	var got testRecord
	if err := v.GetRecord(ctx, "protection", "web01", &got); err != nil {
		t.Fatal(err)
	}
	if got.VM != want.VM || got.Policy != want.Policy || strings.Join(got.Tags, ",") != "a,b" {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Sealed: the stored object does not show the content.
	if raw := be.Objs["protection/web01"]; raw == nil || strings.Contains(string(raw), "gold") {
		t.Fatalf("record not sealed under protection/web01: %q", raw)
	}
	// Overwritten in place.
	want.Policy = "silver"
	if err := v.PutRecord(ctx, "protection", "web01", want); err != nil {
		t.Fatal(err)
	}
	if err := v.GetRecord(ctx, "protection", "web01", &got); err != nil || got.Policy != "silver" {
		t.Fatalf("after update: %+v %v", got, err)
	}
	names, err := v.ListRecords(ctx, "protection")
	if err != nil || strings.Join(names, ",") != "db1,web01" {
		t.Fatalf("list protection: %v %v", names, err)
	}
	if names, err := v.ListRecords(ctx, "policies"); err != nil || strings.Join(names, ",") != "gold" {
		t.Fatalf("list policies: %v %v", names, err)
	}
	if err := v.DeleteRecord(ctx, "protection", "db1"); err != nil {
		t.Fatal(err)
	}
	if names, _ := v.ListRecords(ctx, "protection"); strings.Join(names, ",") != "web01" {
		t.Fatalf("after delete: %v", names)
	}
	// A record moved to another key does not open there (the key is bound in).
	be.Objs["protection/moved"] = be.Objs["protection/web01"]
	if err := v.GetRecord(ctx, "protection", "moved", &got); !errors.Is(err, format.ErrCorrupt) && !errors.Is(err, format.ErrWrongKey) {
		t.Fatalf("record under a foreign key: %v", err)
	}
}

func TestRecordMissing(t *testing.T) {
	ctx := context.Background()
	v, _ := vaulttest.NewRepo(t)
	var got testRecord
	err := v.GetRecord(ctx, "policies", "nope", &got)
	if !errors.Is(err, format.ErrNoRecord) || !strings.Contains(err.Error(), "policies/nope") {
		t.Fatalf("get missing: %v", err)
	}
	if err := v.DeleteRecord(ctx, "policies", "nope"); !errors.Is(err, format.ErrNoRecord) {
		t.Fatalf("delete missing: %v", err)
	}
	if names, err := v.ListRecords(ctx, "policies"); err != nil || len(names) != 0 {
		t.Fatalf("list empty kind: %v %v", names, err)
	}
}

func TestRecordBadNames(t *testing.T) {
	ctx := context.Background()
	v, be := vaulttest.NewRepo(t)
	before := len(be.Objs)
	for _, c := range []struct{ kind, name string }{
		{"policies", ""}, {"policies", "a/b"}, {"policies", "../config"}, {"policies", ".."}, {"policies", ".hidden"},
		{"policies", `a\b`}, {"policies", "a b"}, {"policies", "a\nb"}, {"policies", strings.Repeat("x", 256)},
		{"", "x"}, {"a/b", "x"}, {"Policies", "x"}, {"../x", "y"},
		{"packs", "x"}, {"index", "x"}, {"recoverypoints", "x"}, {"checkpoints", "x"}, {"config", "x"},
		{"replication", "last"}, {"replication", "missing"}, {"gc", "last"}, {"deleted", "x"},
	} {
		err := v.PutRecord(ctx, c.kind, c.name, testRecord{})
		if err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("PutRecord(%q, %q): %v, want refused", c.kind, c.name, err)
		}
		if err := v.GetRecord(ctx, c.kind, c.name, &testRecord{}); err == nil || errors.Is(err, format.ErrNoRecord) {
			t.Errorf("GetRecord(%q, %q): %v, want refused", c.kind, c.name, err)
		}
		if err := v.DeleteRecord(ctx, c.kind, c.name); err == nil || errors.Is(err, format.ErrNoRecord) {
			t.Errorf("DeleteRecord(%q, %q): %v, want refused", c.kind, c.name, err)
		}
	}
	if _, err := v.ListRecords(ctx, "packs"); err == nil {
		t.Error("ListRecords(packs) accepted")
	}
	if len(be.Objs) != before {
		t.Fatalf("refused writes stored objects: %d -> %d", before, len(be.Objs))
	}
}
