package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
	"github.com/vmvault/vmvault/testsuite/faultproxy"
	"github.com/vmvault/vmvault/testsuite/harness"
)

// through starts MinIO, a proxy in front of it and an s3 backend that talks
// through the proxy.
func through(t *testing.T, plan faultproxy.Plan) (*faultproxy.Proxy, storage.Backend) {
	t.Helper()
	m := harness.StartMinIO(t)
	bucket := m.NewBucket(t)
	p, err := faultproxy.New(m.Endpoint, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := m.Config(bucket)
	cfg.Endpoint = p.URL
	cfg.Prefix = "v"
	be, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, be
}

func keys(t *testing.T, be storage.Backend, prefix string) []string {
	t.Helper()
	var out []string
	if err := be.List(t.Context(), prefix, func(k string, _ int64) error { out = append(out, k); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFaults(t *testing.T) {
	p, be := through(t, faultproxy.Plan{Seed: 1})
	ctx := t.Context()
	data := bytes.Repeat([]byte("vmvault "), 4096)

	// Disabled: everything passes, signatures verify through the proxy.
	if err := be.Put(ctx, "packs/a", data); err != nil {
		t.Fatal(err)
	}
	if got, err := be.Get(ctx, "packs/a"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get through the proxy: %d bytes, %v", len(got), err)
	}
	if c := p.Counts(); c.Faults() != 0 || c.Requests < 2 {
		t.Fatalf("disabled proxy: %v", c)
	}

	t.Run("errors", func(t *testing.T) {
		p.SetPlan(faultproxy.Plan{Seed: 2, Errors: 1})
		p.Enable()
		err := be.Put(ctx, "packs/b", data)
		p.Disable()
		if err == nil || !strings.Contains(err.Error(), "SlowDown") && !strings.Contains(err.Error(), "InternalError") {
			t.Fatalf("put with every request failing: %v", err)
		}
		c := p.Counts()
		if c.Errors500+c.Errors503 < 2 {
			t.Fatalf("the client did not retry: %v", c)
		}
		if _, err := be.Stat(ctx, "packs/b"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("a refused put stored its object: %v", err)
		}
	})

	t.Run("truncate", func(t *testing.T) {
		before := p.Counts().Truncated
		p.SetPlan(faultproxy.Plan{Seed: 3, Truncate: 1})
		p.Enable()
		defer p.Disable()
		got, err := be.Get(ctx, "packs/a")
		if err == nil {
			t.Fatalf("truncated body accepted: %d of %d bytes", len(got), len(data))
		}
		if p.Counts().Truncated == before {
			t.Fatal("no body truncated")
		}
		if _, err := be.GetRange(ctx, "packs/a", 100, 5000); err == nil {
			t.Fatal("truncated range accepted")
		}
		// A listing is not an object GET.
		if k := keys(t, be, "packs/"); len(k) != 1 {
			t.Fatalf("listing under truncation: %v", k)
		}
	})

	t.Run("resets", func(t *testing.T) {
		p.SetPlan(faultproxy.Plan{Seed: 4, Resets: 1})
		p.Enable()
		err := be.Put(ctx, "packs/c", data)
		p.Disable()
		if err == nil {
			t.Fatal("put with every connection reset succeeded")
		}
		c := p.Counts()
		if c.ResetsBefore+c.ResetsAfter < 2 {
			t.Fatalf("resets: %v", c)
		}
		// Half the resets come after the server applied the PUT: then the
		// object exists although the client saw a failure.
		_, statErr := be.Stat(ctx, "packs/c")
		if c.ResetsAfter > 0 != (statErr == nil) {
			t.Fatalf("%d resets after the server, stat %v", c.ResetsAfter, statErr)
		}
	})

	t.Run("slow", func(t *testing.T) {
		p.SetPlan(faultproxy.Plan{Seed: 5, Slow: 1, SlowDelay: 300 * time.Millisecond})
		p.Enable()
		defer p.Disable()
		start := time.Now()
		if _, err := be.Stat(ctx, "packs/a"); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("slow reply took %s", d)
		}
	})

	t.Run("listlag", func(t *testing.T) {
		p.SetPlan(faultproxy.Plan{Seed: 6, ListLag: 2 * time.Second})
		p.Enable()
		defer p.Disable()
		if err := be.Put(ctx, "packs/d", data); err != nil {
			t.Fatal(err)
		}
		before := p.Counts()
		if k := keys(t, be, "packs/d"); len(k) != 0 {
			t.Fatalf("listing right after the put: %v", k)
		}
		if c := p.Counts(); c.LaggedLists != before.LaggedLists+1 || c.OmittedKeys != before.OmittedKeys+1 {
			t.Fatalf("lag counts: %v", c)
		}
		if k := keys(t, be, "packs/"); strings.Contains(strings.Join(k, " "), "packs/d") || !strings.Contains(strings.Join(k, " "), "packs/a") {
			t.Fatalf("listing right after the put: %v", k)
		}
		// The object itself is there; only the listing lags.
		if _, err := be.Stat(ctx, "packs/d"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2100 * time.Millisecond)
		if k := keys(t, be, "packs/"); !strings.Contains(strings.Join(k, " "), "packs/d") {
			t.Fatalf("listing after the lag: %v", k)
		}
	})
}
