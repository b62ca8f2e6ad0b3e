package policystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
)

// memVault keeps records in memory. afterList, when set, runs after
// every ListRecords has read the names, to force interleavings.
type memVault struct {
	mu        sync.Mutex
	recs      map[string][]byte
	immutable bool
	afterList func()
	afterPut  func()
}

func newMem() *memVault { return &memVault{recs: map[string][]byte{}} }

func (m *memVault) GetRecord(_ context.Context, kind, name string, obj any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.recs[kind+"/"+name]
	if !ok {
		return fmt.Errorf("%s/%s: %w", kind, name, vault.ErrNoRecord)
	}
	return json.Unmarshal(b, obj)
}

func (m *memVault) PutRecord(_ context.Context, kind, name string, obj any) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[kind+"/"+name] = b
	m.mu.Unlock()
	if m.afterPut != nil {
		m.afterPut()
	}
	m.mu.Lock()
	return nil
}

func (m *memVault) ListRecords(_ context.Context, kind string) ([]string, error) {
	m.mu.Lock()
	var out []string
	for k := range m.recs {
		if n, ok := strings.CutPrefix(k, kind+"/"); ok {
			out = append(out, n)
		}
	}
	m.mu.Unlock()
	sort.Strings(out)
	if m.afterList != nil {
		m.afterList()
	}
	return out, nil
}

func (m *memVault) DeleteRecord(_ context.Context, kind, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.recs[kind+"/"+name]; !ok {
		return fmt.Errorf("%s/%s: %w", kind, name, vault.ErrNoRecord)
	}
	delete(m.recs, kind+"/"+name)
	return nil
}

func (m *memVault) Location() string                   { return "mem://test" }
func (m *memVault) ReloadConfig(context.Context) error { return nil }
func (m *memVault) Config() vault.Config {
	if m.immutable {
		return vault.Config{Immutable: &vault.Immutability{}}
	}
	return vault.Config{}
}

var ctx = context.Background()

func TestDefaultPolicyRule(t *testing.T) {
	m := newMem()
	s := New(m)
	p, err := s.Policy(ctx, policy.DefaultName)
	if err != nil || p.Name != policy.DefaultName || p.Retention.Daily != policy.Default().Retention.Daily {
		t.Fatalf("default without a record: %+v, %v", p, err)
	}
	if _, err := s.Policy(ctx, "gold"); !errors.Is(err, vault.ErrNoRecord) || !strings.Contains(err.Error(), "policy gold does not exist in mem://test") {
		t.Fatalf("missing policy: %v", err)
	}
	changed := policy.Default()
	changed.Retention.Daily = 45
	if err := s.UpdatePolicy(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Policy(ctx, policy.DefaultName); p.Retention.Daily != 45 {
		t.Fatalf("the default's record does not override it: %+v", p)
	}
	if err := s.CreatePolicy(ctx, policy.Default()); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create default: %v", err)
	}
	if err := s.DeletePolicy(ctx, policy.DefaultName); err == nil {
		t.Fatal("the default policy was deleted")
	}
	gold := policy.Default()
	gold.Name = "gold"
	if err := s.UpdatePolicy(ctx, gold); !errors.Is(err, vault.ErrNoRecord) {
		t.Fatalf("update of a missing policy: %v", err)
	}
	if err := s.CreatePolicy(ctx, gold); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Policies(ctx)
	if err != nil || len(ps) != 2 || ps[0].Name != policy.DefaultName || ps[1].Name != "gold" {
		t.Fatalf("policies: %+v %v", ps, err)
	}
}

func TestShorterRetentionRefusedWhenImmutable(t *testing.T) {
	m := newMem()
	s := New(m)
	gold := policy.Default()
	gold.Name, gold.Retention.Daily, gold.Retention.Weekly = "gold", 30, 4
	if err := s.CreatePolicy(ctx, gold); err != nil {
		t.Fatal(err)
	}
	shorter := gold
	shorter.Retention.Daily = 10
	m.immutable = true
	err := s.UpdatePolicy(ctx, shorter)
	if !errors.Is(err, vault.ErrImmutable) || !strings.Contains(err.Error(), "retention cannot be shortened in an immutable vault (daily 30 -> 10)") {
		t.Fatalf("shorter retention in an immutable vault: %v", err)
	}
	longer := gold
	longer.Retention.Weekly = 8
	if err := s.UpdatePolicy(ctx, longer); err != nil {
		t.Fatalf("longer retention refused: %v", err)
	}
	m.immutable = false
	if err := s.UpdatePolicy(ctx, shorter); err != nil {
		t.Fatalf("shorter retention in a mutable vault: %v", err)
	}
}

func protectReq(vm string, max int) ProtectRequest {
	return ProtectRequest{VM: vm, Policy: policy.DefaultName, Host: "h1", Since: time.Unix(1700000000, 0), Max: max}
}

func TestProtectKeepsHostAndSince(t *testing.T) {
	s := New(newMem())
	pr, err := s.Protect(ctx, protectReq("web", 5))
	if err != nil || pr.Host != "h1" {
		t.Fatalf("%+v %v", pr, err)
	}
	again := protectReq("web", 5)
	again.Host, again.Since, again.Policy = "h2", time.Unix(1800000000, 0), "gold"
	pr, err = s.Protect(ctx, again)
	if err != nil || pr.Host != "h1" || !pr.Since.Equal(time.Unix(1700000000, 0)) || pr.Policy != "gold" {
		t.Fatalf("protect again: %+v %v", pr, err)
	}
	again.HostGiven = true
	if pr, _ = s.Protect(ctx, again); pr.Host != "h2" {
		t.Fatalf("--host not applied: %+v", pr)
	}
}

func TestProtectLimit(t *testing.T) {
	s := New(newMem())
	for _, vm := range []string{"a", "b"} {
		if _, err := s.Protect(ctx, protectReq(vm, 2)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Protect(ctx, protectReq("c", 2))
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "already protects 2 vms, the limit (VMVAULT_MAX_PROTECTED_VMS=2): vm c is not protected") {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := s.Protection(ctx, "c"); !errors.Is(err, vault.ErrNoRecord) {
		t.Fatalf("a refused protect left a record: %v", err)
	}
	// A VM already protected is not counted again.
	if _, err := s.Protect(ctx, protectReq("a", 2)); err != nil {
		t.Fatalf("re-protect at the limit: %v", err)
	}
	// A retried attempt finds its own record and counts it once.
	m := newMem()
	s = New(m)
	req := protectReq("x", 1)
	if _, err := s.Protect(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Protect(ctx, req); err != nil {
		t.Fatalf("retry of the same protect: %v", err)
	}
}

// Two protects that both count before either writes and both write before
// either counts again: both see one record too many, both step back, and
// neither leaves a record (the worst case: one is run again).
func TestProtectRaceBothStepBack(t *testing.T) {
	m := newMem()
	s := New(m)
	var counted, recounted sync.WaitGroup
	counted.Add(2)
	recounted.Add(2)
	var calls atomic.Int32
	m.afterList = func() {
		// Lists 1-2 are the protects' first counts, 3-4 their second: each
		// waits for the other's.
		switch calls.Add(1) {
		case 1, 2:
			counted.Done()
			counted.Wait()
		case 3, 4:
			recounted.Done()
			recounted.Wait()
		}
	}
	var written sync.WaitGroup
	written.Add(2)
	m.afterPut = func() { written.Done(); written.Wait() }
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, vm := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Protect(ctx, protectReq(vm, 1))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "while another protect ran at the same moment") {
			t.Errorf("protect %d: %v", i, err)
		}
	}
	if names, _ := m.ListRecords(ctx, policy.RecordProtection); len(names) != 0 {
		t.Fatalf("records after both stepped back: %v", names)
	}
}

// Many protects at once never pass the limit, and every refused one leaves
// no record.
func TestProtectRaceLimitHolds(t *testing.T) {
	for round := 0; round < 20; round++ {
		m := newMem()
		m.afterList = func() { time.Sleep(time.Duration(round%3) * time.Millisecond) }
		s := New(m)
		const limit, tries = 3, 12
		ok := make([]bool, tries)
		var wg sync.WaitGroup
		for i := range tries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Protect(ctx, protectReq(fmt.Sprintf("vm%d", i), limit))
				if err != nil && !errors.Is(err, ErrLimit) {
					t.Errorf("vm%d: %v", i, err)
				}
				ok[i] = err == nil
			}()
		}
		wg.Wait()
		names, _ := m.ListRecords(ctx, policy.RecordProtection)
		n := 0
		for i, o := range ok {
			_, err := s.Protection(ctx, fmt.Sprintf("vm%d", i))
			if o != (err == nil) {
				t.Fatalf("round %d vm%d: succeeded %v, record error %v", round, i, o, err)
			}
			if o {
				n++
			}
		}
		if len(names) > limit || n == 0 {
			t.Fatalf("round %d: %d records under a limit of %d (%d succeeded)", round, len(names), limit, n)
		}
	}
}

func TestBadVMNameRefusedBeforeIO(t *testing.T) {
	s := New(newMem())
	for _, vm := range []string{"", ".hidden", "a/b", "a b", strings.Repeat("x", 256)} {
		if _, err := s.Protect(ctx, protectReq(vm, 5)); !errors.Is(err, ErrBadName) {
			t.Errorf("protect %q: %v", vm, err)
		}
		if _, err := s.Protection(ctx, vm); !errors.Is(err, ErrBadName) {
			t.Errorf("protection %q: %v", vm, err)
		}
	}
}
