package harness

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
)

func TestBinDirOverride(t *testing.T) {
	t.Setenv("VMVAULT_BIN_DIR", "/opt/vmvault/bin")
	if got := BinDir(); got != "/opt/vmvault/bin" {
		t.Fatalf("BinDir() = %q with VMVAULT_BIN_DIR set", got)
	}
}

func TestBinDirModuleRoot(t *testing.T) {
	t.Setenv("VMVAULT_BIN_DIR", "")
	got := BinDir()
	if !strings.HasSuffix(got, "/bin") || strings.Contains(got, "testsuite") {
		t.Fatalf("BinDir() = %q, want <module root>/bin", got)
	}
}

func TestFreePortDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if p <= 0 || seen[p] {
			t.Fatalf("FreePort returned %d twice or invalid", p)
		}
		seen[p] = true
	}
}

func TestMinIO(t *testing.T) {
	m := StartMinIO(t)
	a, b := m.NewBucket(t), m.NewBucket(t)
	if a == b {
		t.Fatalf("NewBucket returned %q twice", a)
	}
}

func TestTemporalSearchAttributes(t *testing.T) {
	tp := StartTemporal(t)
	c := tp.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.OperatorService().ListSearchAttributes(ctx,
		&operatorservice.ListSearchAttributesRequest{Namespace: tp.Namespace})
	if err != nil {
		t.Fatalf("list search attributes: %v", err)
	}
	for _, sa := range SearchAttributes {
		name, typ, _ := strings.Cut(sa, "=")
		got, ok := resp.GetCustomAttributes()[name]
		if !ok {
			t.Errorf("search attribute %s missing; custom attributes: %v", name,
				slices.Sorted(maps.Keys(resp.GetCustomAttributes())))
			continue
		}
		if want := enums.IndexedValueType(enums.IndexedValueType_value["INDEXED_VALUE_TYPE_"+strings.ToUpper(typ)]); got != want {
			t.Errorf("search attribute %s has type %v, want %v", name, got, want)
		}
	}
}
