package s3_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/storage/s3"
	"github.com/vmvault/vmvault/testsuite/faultproxy"
	"github.com/vmvault/vmvault/testsuite/harness"
)

// A body cut short after its headers (a connection dropped mid-transfer)
// is fetched again, never returned short; one that keeps breaking off
// fails naming the attempts.
func TestBodyCutShortIsFetchedAgain(t *testing.T) {
	m := harness.StartMinIO(t)
	bucket := m.NewBucket(t)
	p, err := faultproxy.New(m.Endpoint, faultproxy.Plan{Seed: 7, Truncate: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := m.Config(bucket)
	cfg.Endpoint = p.URL
	b, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 8192)
	if err := b.Put(t.Context(), "packs/p", data); err != nil {
		t.Fatal(err)
	}
	p.Enable()
	for i := range 30 {
		got, err := b.Get(t.Context(), "packs/p")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get %d with a fifth of the bodies cut short: %d bytes, %v", i, len(got), err)
		}
		got, err = b.GetRange(t.Context(), "packs/p", 1000, 5000)
		if err != nil || !bytes.Equal(got, data[1000:6000]) {
			t.Fatalf("range %d with a fifth of the bodies cut short: %d bytes, %v", i, len(got), err)
		}
	}
	if n := p.Counts().Truncated; n < 5 {
		t.Fatalf("only %d bodies cut short", n)
	}
	p.SetPlan(faultproxy.Plan{Seed: 7, Truncate: 1})
	if _, err := b.Get(t.Context(), "packs/p"); err == nil || !strings.Contains(err.Error(), "attempt 4 of 4") {
		t.Fatalf("get with every body cut short: %v", err)
	}
	// A range past the end is refused at once, not asked for again.
	p.Disable()
	before := p.Counts().Requests
	if _, err := b.GetRange(t.Context(), "packs/p", int64(len(data))-10, 20); err == nil {
		t.Fatal("range past the end returned no error")
	}
	if n := p.Counts().Requests - before; n != 1 {
		t.Fatalf("a range past the end took %d requests", n)
	}
}
