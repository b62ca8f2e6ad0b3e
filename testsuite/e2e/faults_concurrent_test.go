package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// TestFaultsConcurrent: GC, retention, replication and check run while
// several backups run, in a seeded interleaving. Every backup completes,
// every point kept restores bit-exact (the newest of each VM from the
// secondary too), GC frees the data of a purged point and nothing a point
// references (check --read-data is clean afterwards), and no blob is in the
// index twice.
func TestFaultsConcurrent(t *testing.T) {
	start := time.Now()
	ctx := context.Background()
	e := newEnv(t, envOpts{s3: true, initArgs: []string{"--pack-size", "1048576", "--leaf-blocks", "16"}})
	e.addSecondary()
	e.startWorker(nil)
	r := faultRand(t)
	vms, rounds := []string{"cc0", "cc1", "cc2"}, 2
	if faultsFull() {
		vms, rounds = append(vms, "cc3", "cc4"), 4
	}
	var out faultOutcome
	points := map[string]dmgPoint{} // every point made, by ref
	made := map[string][]string{}   // each VM's points, oldest first
	for i, vm := range append([]string{"ccgone"}, vms...) {
		spec := vmfixture.Spec{Name: vm, OSSize: 16 * mib, DataDisks: []int64{32 * mib}, Seed: uint64(300 + i)}
		if _, err := vmfixture.Create(e.vmsRoot(), spec); err != nil {
			t.Fatal(err)
		}
		p := dmgPoint{hash: diskHashes(t, filepath.Join(e.vmsRoot(), vm)), size: 48 * mib}
		p.rp = e.backup(vm).RecoveryPoint
		out.Completed++
		points[p.rp] = p
		made[vm] = append(made[vm], p.rp)
	}
	// ccgone's point is deleted and purged: GC has its data to free.
	var gone string
	for rp := range points {
		if strings.HasPrefix(rp, "ccgone/") {
			gone = rp
		}
	}
	v := e.openVault()
	purgeNow(t, v, gone)
	delete(points, gone)

	// The maintenance jobs, each started after a seeded delay. Backups get
	// a 30 s limit, GC a 31 s grace: the shortest the product accepts
	// beside them (gc_rule_test.go).
	type op struct {
		name string
		args []string
	}
	ops := []op{
		{"gc", []string{"vault", "gc", "--grace", "31s", "--wait", "--json"}},
		{"retention", []string{"retention", "run", "--vm", vms[0], "--daily", "1", "--keep-deleted-for", "1ms", "--json"}},
		{"replicate", []string{"vault", "replicate", "--wait"}},
		{"check", []string{"vault", "check", "--json"}},
	}
	if faultsFull() {
		// One retention run at a time (the product refuses a second): the
		// full form's covers two VMs.
		ops[1].args = []string{"retention", "run", "--vm", vms[0], "--vm", vms[1], "--daily", "1", "--keep-deleted-for", "1ms", "--json"}
		ops = append(ops, op{"replicate", []string{"vault", "replicate", "--wait"}}, op{"check", []string{"vault", "check", "--read-data", "--json"}})
	}
	type plan struct {
		delay time.Duration
		what  string
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		problems []string
		order    []plan
		gc       workflows.GCResult
	)
	fail := func(f string, a ...any) { mu.Lock(); problems = append(problems, fmt.Sprintf(f, a...)); mu.Unlock() }
	for _, o := range ops {
		d := time.Duration(r.Intn(4000)) * time.Millisecond
		order = append(order, plan{d, o.name})
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(d)
			res := e.cli(o.args...)
			mu.Lock()
			defer mu.Unlock()
			if res.code != 0 {
				problems = append(problems, fmt.Sprintf("%s beside the backups: exit %d: %s", o.name, res.code, strings.TrimSpace(res.stderr)))
				return
			}
			out.Completed++
			out.Faults++
			if o.name == "gc" {
				if err := json.Unmarshal([]byte(res.stdout), &gc); err != nil {
					problems = append(problems, fmt.Sprintf("gc output %q: %v", res.stdout, err))
				}
			}
		}()
	}
	// Each VM backs up rounds times, after a seeded pause and a change.
	for i, vm := range vms {
		var pauses []time.Duration
		var offs []int64
		for range rounds {
			pauses = append(pauses, time.Duration(r.Intn(3000))*time.Millisecond)
			offs = append(offs, int64(r.Intn(28)))
		}
		for k := range rounds {
			order = append(order, plan{pauses[k], fmt.Sprintf("backup %s #%d", vm, k+1)})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range rounds {
				time.Sleep(pauses[k])
				if err := vmfixture.Mutate(e.vmsRoot(), vm, offs[k], 2, uint64(400+10*i+k)); err != nil {
					fail("mutate %s: %v", vm, err)
					return
				}
				p := dmgPoint{size: 48 * mib}
				var err error
				if p.hash, err = hashes(filepath.Join(e.vmsRoot(), vm)); err != nil {
					fail("%v", err)
					return
				}
				res := e.cli("backup", vm, "--wait", "--json", "--timeout", "30s")
				var br workflows.BackupVMResult
				if res.code != 0 || json.Unmarshal([]byte(res.stdout), &br) != nil {
					fail("backup %s #%d beside maintenance: exit %d: %s", vm, k+1, res.code, strings.TrimSpace(res.stderr))
					return
				}
				p.rp = br.RecoveryPoint
				mu.Lock()
				points[p.rp] = p
				made[vm] = append(made[vm], p.rp)
				out.Completed++
				mu.Unlock()
			}
		}()
	}
	sort.Slice(order, func(i, j int) bool { return order[i].delay < order[j].delay })
	t.Logf("interleaving (start delays): %v", order)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("gc: mark %+v, sweep %+v", gc.Mark, gc.Sweep)
	if gc.Sweep.DeletedPacks == 0 || gc.Sweep.FreedBytes <= 0 {
		t.Errorf("gc freed nothing of the purged point: %+v", gc)
	}

	// Nothing referenced was freed, nothing is indexed twice.
	var rep struct {
		OK      bool     `json:"ok"`
		Damaged []string `json:"damaged"`
	}
	if res := e.cli("vault", "check", "--read-data", "--json"); res.code != 0 || json.Unmarshal([]byte(res.stdout), &rep) != nil || !rep.OK {
		t.Errorf("check --read-data after the concurrent run: exit %d, %s %s", res.code, res.stdout, res.stderr)
	}
	idx, err := e.openVault().Repo().Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// GC's repack copies the live blobs of mostly-garbage packs into a new
	// pack; the old ones go in the next sweep. Those copies are the only
	// second copies allowed: no backup stored a blob twice.
	repacked := map[format.ID]bool{}
	for _, p := range gc.Mark.Repack.Packs {
		repacked[p] = true
	}
	twice := map[format.ID]bool{}
	cv := e.openVault()
	for rp := range points {
		if _, err := cv.LoadRecoveryPoint(ctx, rp); err != nil {
			continue // expired
		}
		pointBlobs(t, cv, rp, func(id format.ID, role string) {
			c := idx.Copies(id)
			if len(c) < 2 || twice[id] || slices.ContainsFunc(c, func(l index.Location) bool { return repacked[l.Pack] }) {
				return
			}
			twice[id] = true
			t.Errorf("%s %s of %s is stored %d times: %v", role, id.Short(), rp, len(c), c)
		})
	}
	st := idx.Stats()
	t.Logf("index: %d blobs in %d packs, %d second copies; GC's repack moved %d live blobs out of %d packs; %d blobs of the kept points stored twice by backups",
		st.Blobs, st.Packs, st.Duplicates, gc.Mark.Repack.LiveBlobs, len(gc.Mark.Repack.Packs), len(twice))
	e.mustCLI("vault", "replicate", "--wait")
	b := &dmgBench{t: t, e: e}
	for _, vm := range vms {
		var rows []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(e.mustCLI("rp", "list", vm, "--json")), &rows); err != nil {
			t.Fatal(err)
		}
		kept := map[string]bool{}
		for _, row := range rows {
			rp := row.ID
			if !strings.Contains(rp, "/") {
				rp = vm + "/" + rp
			}
			p, ok := points[rp]
			if !ok {
				t.Errorf("rp list %s shows %s, which no backup made", vm, rp)
				continue
			}
			kept[rp] = true
			b.restore(p, false, false)
		}
		// Retention never expires a VM's newest point.
		newest := made[vm][len(made[vm])-1]
		if !kept[newest] {
			t.Errorf("%s's newest point %s is not kept: %v", vm, newest, kept)
			continue
		}
		b.restore(points[newest], true, false)
	}
	out.Restores, out.BytesLost, out.WrongRestores = b.out.Restores, b.out.BytesLost, b.out.WrongRestores
	t.Logf("%d backups and %d maintenance jobs in %s", len(points), len(ops), time.Since(start).Round(time.Second))
	out.Scenario = "GC, retention, replication and check beside running backups"
	recordFaults(t, out)
}

// hashes is diskHashes without a *testing.T, for goroutines.
func hashes(dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, d := range []string{"os", "data0"} {
		h, err := vmfixture.SHA256(filepath.Join(dir, d+".raw"))
		if err != nil {
			return nil, err
		}
		out[d] = h
	}
	return out, nil
}
