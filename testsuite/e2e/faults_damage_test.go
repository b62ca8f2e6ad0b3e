package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// The damage matrix of the fault suite: one object of a VM's chain of three
// recovery points is damaged (a byte flipped, the object cut to half, or
// deleted), then check must name it, repair and the next backup must heal
// what the VM's disks can still give, every point must restore bit-exact or
// fail with a clear error when check names it as damaged, and replication
// must never carry the damage to the secondary, whose copy of the damaged
// point restores bit-exact.

type dmgKind string

const (
	dmgPack         dmgKind = "pack"               // a data block's pack
	dmgRoot         dmgKind = "tree root"          // a disk's tree root blob, in its pack
	dmgLeaf         dmgKind = "tree leaf"          // a block-map leaf blob, in its pack
	dmgIndex        dmgKind = "index object"       // the index object of a pack
	dmgManifest     dmgKind = "manifest"           // a recovery point
	dmgCheckpoint   dmgKind = "checkpoint"         // an interrupted backup's checkpoint
	dmgSecPack      dmgKind = "secondary pack"     // the secondary's copy of a pack
	dmgSecManifest  dmgKind = "secondary manifest" // the secondary's copy of a manifest
	dmgFlip         string  = "flip"               // one byte flipped, same size
	dmgTruncate     string  = "truncate"           // cut to half
	dmgDelete       string  = "delete"
	dmgChainLength          = 3
	dmgDataDiskSize         = 48 * mib
)

type dmgCase struct {
	kind dmgKind
	how  string
}

func (c dmgCase) String() string { return strings.ReplaceAll(string(c.kind), " ", "-") + "/" + c.how }

// dmgCases is the whole matrix. Tree nodes are blobs inside packs, not
// objects of their own: they are damaged in place (a flip inside the blob,
// or the pack cut inside it); deleting one is deleting its pack.
func dmgCases() []dmgCase {
	var all []dmgCase
	for _, k := range []dmgKind{dmgPack, dmgRoot, dmgLeaf, dmgIndex, dmgManifest, dmgCheckpoint, dmgSecPack, dmgSecManifest} {
		for _, how := range []string{dmgFlip, dmgTruncate, dmgDelete} {
			if how == dmgDelete && (k == dmgRoot || k == dmgLeaf) {
				continue
			}
			all = append(all, dmgCase{k, how})
		}
	}
	return all
}

// dmgPoint is one recovery point of a chain and what its disks held.
type dmgPoint struct {
	rp   string
	hash map[string]string
	size int64
}

type dmgBench struct {
	t   *testing.T
	e   *env
	sec storage.Backend
	r   *rand.Rand
	out faultOutcome
	// pristine is the sha256 of every immutable object seen on the
	// secondary before any damage reached the primary; secDamaged are the
	// keys damaged on the secondary by the test itself.
	pristine   map[string]string
	secDamaged map[string]bool
	w          *worker
}

func TestFaultsDamage(t *testing.T) {
	start := time.Now()
	e := newEnv(t, envOpts{s3: true, initArgs: []string{"--pack-size", "1048576", "--leaf-blocks", "16"}})
	_, sec := e.addSecondary()
	b := &dmgBench{t: t, e: e, sec: sec, r: faultRand(t), pristine: map[string]string{}, secDamaged: map[string]bool{}}
	b.w = e.startWorker(nil)
	cases := pickFaults(t, dmgCases(), 3)
	if only := os.Getenv("VMVAULT_FAULTS_CASES"); only != "" {
		// To reproduce a case: its names, comma-separated (e.g. "pack/flip").
		cases = slices.DeleteFunc(dmgCases(), func(c dmgCase) bool { return !slices.Contains(strings.Split(only, ","), c.String()) })
	}
	// One Temporal server, vault and secondary for every case: each case
	// has a VM of its own, and looks only at that VM's points.
	for i, c := range cases {
		t.Logf("case %d: %s", i, c)
		b.run(c, fmt.Sprintf("dmg%02d", i), uint64(100+i))
		if t.Failed() {
			break
		}
	}
	t.Logf("%d damage cases in %s", len(cases), time.Since(start).Round(time.Second))
	b.out.Scenario = "damage: packs, tree nodes, index objects, manifests, checkpoints, secondary copies (flipped, cut, deleted)"
	recordFaults(t, b.out)
}

func (b *dmgBench) run(c dmgCase, vm string, seed uint64) {
	t, e := b.t, b.e
	chain := b.chain(vm, seed, c.kind == dmgCheckpoint, c.how)
	if c.kind == dmgCheckpoint {
		b.afterCheckpoint(vm, chain)
		return
	}
	e.mustCLI("vault", "replicate", "--wait")
	b.snapshotSecondary()
	switch c.kind {
	case dmgManifest:
		b.manifest(c, vm, chain)
	case dmgSecPack, dmgSecManifest:
		b.secondary(c, vm, chain)
	default:
		b.data(c, vm, chain)
	}
	t.Logf("%s: faults %d, restores %d, failed cleanly %d, bytes lost %d, wrong %d", c, b.out.Faults, b.out.Restores, b.out.FailedCleanly, b.out.BytesLost, b.out.WrongRestores)
}

// chain creates vm and backs it up three times, changing data0 between
// the backups. With killed, the third backup's worker is killed once its
// transfer holds a checkpoint, which is then damaged with how.
func (b *dmgBench) chain(vm string, seed uint64, killed bool, how string) []dmgPoint {
	t, e := b.t, b.e
	spec := vmfixture.Spec{Name: vm, OSSize: 16 * mib, DataDisks: []int64{dmgDataDiskSize}, Seed: seed}
	if _, err := vmfixture.Create(e.vmsRoot(), spec); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.vmsRoot(), vm)
	var chain []dmgPoint
	for i := range dmgChainLength {
		if i > 0 {
			off, n := int64(b.r.Intn(int(dmgDataDiskSize/mib)-8)), int64(1+b.r.Intn(6))
			if killed && i == dmgChainLength-1 {
				off, n = 0, dmgDataDiskSize/mib // every block new: the transfer takes a while
			}
			if err := vmfixture.Mutate(e.vmsRoot(), vm, off, n, seed*10+uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		p := dmgPoint{hash: diskHashes(t, dir), size: 16*mib + dmgDataDiskSize}
		if killed && i == dmgChainLength-1 {
			p.rp = b.killedBackup(vm, how)
		} else {
			p.rp = e.backup(vm).RecoveryPoint
		}
		b.out.Completed++
		chain = append(chain, p)
	}
	return chain
}

// killedBackup runs a backup of vm on a worker whose reads are slow, kills
// that worker once the data disk's transfer has a checkpoint, damages the
// checkpoint object, and lets a normal worker finish the job.
func (b *dmgBench) killedBackup(vm, how string) string {
	t, e := b.t, b.e
	b.w.kill()
	slow := e.startWorker([]string{"VMVAULT_READ_LIMIT_MIB=6"})
	if r := e.cliEnv([]string{"VMVAULT_HEARTBEAT_TIMEOUT=3s"}, "backup", vm); r.code != 0 {
		t.Fatalf("backup %s: %s", vm, r.stderr)
	}
	ctx := context.Background()
	c := e.tp.Client(t)
	id := workflows.BackupWorkflowID(vm)
	var ref string
	for deadline := time.Now().Add(2 * time.Minute); ref == ""; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint heartbeat seen")
		}
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.WorkflowExecutionInfo.CloseTime != nil {
			t.Fatal("backup finished before the worker could be killed")
		}
		for _, pa := range d.PendingActivities {
			if pa.ActivityType.GetName() != "TransferDisk" || pa.HeartbeatDetails == nil {
				continue
			}
			var hb struct {
				Checkpoint *vault.Checkpoint `json:"checkpoint"`
			}
			if json.Unmarshal(pa.HeartbeatDetails.Payloads[0].Data, &hb) == nil && hb.Checkpoint != nil && hb.Checkpoint.NextBlock > 0 {
				ref = hb.Checkpoint.Ref
			}
		}
	}
	slow.kill()
	b.damage(e.be, ref, how, -1)
	b.out.Faults++
	t.Logf("checkpoint %s: %s, worker killed", ref, how)
	b.w = e.startWorker(nil)
	var res workflows.BackupVMResult
	if err := c.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		t.Fatalf("backup after a damaged checkpoint: %v", err)
	}
	for _, n := range res.Notes {
		if strings.Contains(n, "resumed at offset") {
			t.Errorf("backup resumed from a damaged checkpoint: %s", n)
		}
	}
	return res.RecoveryPoint
}

// afterCheckpoint: the job that lost its checkpoint completed; the vault
// checks clean and every point of the chain restores bit-exact.
func (b *dmgBench) afterCheckpoint(vm string, chain []dmgPoint) {
	rep, _ := b.check("--read-data")
	if d := b.damagedOf(rep, vm); len(d) != 0 {
		b.t.Errorf("check after a damaged checkpoint names %v", d)
	}
	for _, p := range chain {
		b.restore(p, false, false)
	}
}

// data damages a blob's pack or its index object.
func (b *dmgBench) data(c dmgCase, vm string, chain []dmgPoint) {
	t, e := b.t, b.e
	ctx := context.Background()
	v := e.openVault()
	idx, err := v.Repo().Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]map[format.ID]bool{}
	var cands []format.ID
	seen := map[format.ID]bool{}
	for _, p := range chain {
		refs[p.rp] = pointBlobs(t, v, p.rp, func(id format.ID, role string) {
			want := map[dmgKind]string{dmgPack: "block", dmgIndex: "block", dmgRoot: "root", dmgLeaf: "leaf"}[c.kind]
			if role == want && !seen[id] {
				seen[id] = true
				cands = append(cands, id)
			}
		})
	}
	if len(cands) == 0 {
		t.Fatalf("no %s blob in %s's points", c.kind, vm)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].String() < cands[j].String() })
	blob := cands[b.r.Intn(len(cands))]
	loc, ok := idx.Lookup(blob)
	if !ok {
		t.Fatalf("blob %s not indexed", blob.Short())
	}
	pi, ikey := b.packIndex(loc.Pack)
	packKey := format.PackKey(loc.Pack)
	// hurt are the blobs unreadable until repair: a pack of another size
	// than its index object says, or without one, is out of the index
	// whole. lost are those repair cannot salvage from the pack.
	var hurt, lost []format.ID
	for _, en := range pi.Entries {
		hurt = append(hurt, en.ID)
	}
	switch {
	case c.kind == dmgIndex:
		b.damage(e.be, ikey, c.how, -1)
	case c.how == dmgFlip:
		b.damage(e.be, packKey, c.how, int64(loc.Offset)+int64(loc.Length)/2)
		hurt, lost = []format.ID{blob}, []format.ID{blob}
	default:
		cut := pi.Size / 2
		if c.kind != dmgPack { // cut inside the tree node
			cut = int64(loc.Offset) + int64(loc.Length)/2
		}
		if c.how == dmgDelete {
			cut = 0
		}
		b.damageTo(e.be, packKey, c.how, cut)
		for _, en := range pi.Entries {
			if int64(en.Offset)+int64(en.Length) > cut {
				lost = append(lost, en.ID)
			}
		}
	}
	b.out.Faults++
	key := packKey
	if c.kind == dmgIndex {
		key = ikey
	}
	t.Logf("%s %s of blob %s (%d blobs of its pack out of the index until repair, %d lost)", c.how, key, blob.Short(), len(hurt), len(lost))
	hit := func(p dmgPoint) bool {
		for _, id := range hurt {
			if refs[p.rp][id] {
				return true
			}
		}
		return false
	}

	// Check names the damage: the metadata check unless only a block's
	// bytes changed, which takes re-reading the data.
	args := []string{}
	if c.kind == dmgPack && c.how == dmgFlip {
		args = append(args, "--read-data")
	}
	rep, code := b.check(args...)
	named := b.damagedOf(rep, vm)
	if code == 0 {
		t.Errorf("vault check %v exits 0 after a damaged %s", args, c.kind)
	}
	for _, p := range chain {
		if hit(p) != slices.Contains(named, p.rp) {
			t.Errorf("check: %s references the damage: %v, named damaged: %v (%v)", p.rp, hit(p), slices.Contains(named, p.rp), named)
		}
	}
	if c.kind == dmgIndex && c.how != dmgDelete && !slices.ContainsFunc(rep.IndexProblems, func(p format.IndexProblem) bool { return strings.Contains(fmt.Sprint(p), ikey) }) {
		t.Errorf("check does not name %s: %+v", ikey, rep.IndexProblems)
	}
	if c.kind != dmgIndex && !slices.ContainsFunc(rep.Damage, func(d vault.Damage) bool { return d.Pack != nil && *d.Pack == loc.Pack }) {
		t.Errorf("check does not name pack %s", loc.Pack.Short())
	}

	// Replication after the damage copies none of it.
	e.mustCLI("vault", "replicate", "--wait")
	b.secondaryPristine()
	for _, p := range chain {
		if hit(p) {
			b.restore(p, true, false)
		}
	}

	// Repair, and one backup of the unchanged VM.
	t.Logf("vault repair: %s", strings.TrimSpace(e.mustCLI("vault", "repair")))
	heal := dmgPoint{rp: e.backup(vm).RecoveryPoint, hash: chain[len(chain)-1].hash, size: chain[len(chain)-1].size}
	b.out.Completed++
	healed := pointBlobs(t, e.openVault(), heal.rp, nil)
	rep, _ = b.check("--read-data")
	named = b.damagedOf(rep, vm)
	for _, p := range chain {
		// Lost for good: a blob the disks no longer hold (the index alone
		// lost is rebuilt by repair).
		truly := false
		for _, id := range lost {
			truly = truly || refs[p.rp][id] && !healed[id]
		}
		if truly != slices.Contains(named, p.rp) {
			t.Errorf("after repair and a backup: %s lost data for good: %v, named damaged: %v (%v)", p.rp, truly, slices.Contains(named, p.rp), named)
		}
		b.restore(p, false, slices.Contains(named, p.rp))
	}
	if slices.Contains(named, heal.rp) {
		t.Errorf("the healing backup's point %s is damaged", heal.rp)
	}
	b.restore(heal, false, false)
	e.mustCLI("vault", "replicate", "--wait")
	b.secondaryPristine()
}

// manifest damages one point's manifest.
func (b *dmgBench) manifest(c dmgCase, vm string, chain []dmgPoint) {
	t, e := b.t, b.e
	k := b.r.Intn(len(chain))
	key := format.KindRecoveryPoint.Prefix() + chain[k].rp
	b.damage(e.be, key, c.how, -1)
	b.out.Faults++
	t.Logf("%s %s", c.how, key)
	if c.how == dmgDelete {
		// Nothing on the primary names a point that is gone; the
		// comparison with the secondary does.
		var cj checkJSONOut
		b.cliJSON(&cj, "vault", "check", "--secondary", "--json")
		if !slices.Contains(cj.Comparison.OnlySecondary, key) {
			t.Errorf("check --secondary does not list %s as only on the secondary: %+v", key, cj.Comparison)
		}
	} else {
		rep, code := b.check()
		if code == 0 || !slices.ContainsFunc(rep.CorruptManifests, func(m repo.ManifestProblem) bool { return m.Key == key }) {
			t.Errorf("check (exit %d) does not name the corrupt manifest %s: %+v", code, key, rep.CorruptManifests)
		}
	}
	e.mustCLI("vault", "replicate", "--wait")
	b.secondaryPristine()
	b.restore(chain[k], true, false)

	e.mustCLI("vault", "repair")
	heal := dmgPoint{rp: e.backup(vm).RecoveryPoint, hash: chain[len(chain)-1].hash, size: chain[len(chain)-1].size}
	b.out.Completed++
	rep, _ := b.check()
	if d := b.damagedOf(rep, vm); len(d) != 0 {
		t.Errorf("check after a damaged manifest names %v", d)
	}
	if c.how != dmgDelete && !slices.ContainsFunc(rep.CorruptManifests, func(m repo.ManifestProblem) bool { return m.Key == key }) {
		t.Errorf("the corrupt manifest %s is no longer reported: %+v", key, rep.CorruptManifests)
	}
	for i, p := range chain {
		b.restore(p, false, i == k)
	}
	b.restore(heal, false, false)
	e.mustCLI("vault", "replicate", "--wait")
	b.secondaryPristine()
	b.restore(chain[k], true, false)
}

// secondary damages the secondary's copy of a pack or manifest: the
// primary is untouched, check --secondary names it, after a replication
// the secondary's point restores bit-exact or is still named (a flip), and
// after vault repair --secondary it restores bit-exact from the secondary.
func (b *dmgBench) secondary(c dmgCase, vm string, chain []dmgPoint) {
	t, e := b.t, b.e
	ctx := context.Background()
	k := b.r.Intn(len(chain))
	var key string
	off := int64(-1)
	if c.kind == dmgSecManifest {
		key = format.KindRecoveryPoint.Prefix() + chain[k].rp
	} else {
		// A block no other VM has: the damage stays this case's until
		// it is healed (a flip only by vault repair --secondary, below).
		v := e.openVault()
		others := othersBlobs(v, vm)
		var blocks []format.ID
		pointBlobs(t, v, chain[k].rp, func(id format.ID, role string) {
			if role == "block" && !others[id] {
				blocks = append(blocks, id)
			}
		})
		if len(blocks) == 0 {
			t.Fatalf("%s has no block of its own", chain[k].rp)
		}
		idx, err := v.Repo().Index(ctx)
		if err != nil {
			t.Fatal(err)
		}
		loc, ok := idx.Lookup(blocks[b.r.Intn(len(blocks))])
		if !ok {
			t.Fatal("block not indexed")
		}
		key, off = format.PackKey(loc.Pack), int64(loc.Offset)+int64(loc.Length)/2
	}
	b.damage(b.sec, key, c.how, off)
	b.secDamaged[key] = true
	b.out.Faults++
	t.Logf("%s the secondary's %s", c.how, key)

	secCheck := func() (checkJSONOut, bool) {
		var cj checkJSONOut
		code := b.cliJSON(&cj, "vault", "check", "--secondary", "--read-data", "--json")
		named := slices.Contains(cj.Damaged, chain[k].rp) || slices.Contains(cj.Comparison.OnlyPrimary, key) ||
			slices.ContainsFunc(cj.CorruptManifests, func(m repo.ManifestProblem) bool { return m.Key == key })
		return cj, named && (code != 0 || c.how == dmgDelete)
	}
	if cj, named := secCheck(); !named {
		t.Errorf("check --secondary does not name the damage of %s: damaged %v, manifests %+v, comparison %+v", key, cj.Damaged, cj.CorruptManifests, cj.Comparison)
	}
	rep, _ := b.check()
	if d := b.damagedOf(rep, vm); len(d) != 0 {
		t.Errorf("damage on the secondary shows on the primary: %v", d)
	}
	for _, p := range chain {
		b.restore(p, false, false)
	}
	e.mustCLI("vault", "replicate", "--wait")
	cj, stillNamed := secCheck()
	t.Logf("after a replication the secondary's %s is named damaged: %v (%v)", key, stillNamed, b.damagedOf(cj.CheckReport, vm))
	b.restore(chain[k], true, stillNamed)
	if got, err := b.sec.Get(ctx, key); (err != nil || sha(got) != b.pristine[key]) && c.how != dmgFlip {
		// A copy of another size or a missing one is healed from the
		// primary's verified copy. A flip keeps the size: replication
		// skips an immutable object it holds at the same size, unread.
		t.Errorf("replication did not heal the secondary's %s (%s): %v", key, c.how, err)
	}

	// The heal reads the whole secondary: the flip replication could not
	// see is replaced with the primary's verified copy; nothing else is
	// written (secondaryPristine).
	r := e.cli("vault", "repair", "--secondary")
	t.Logf("vault repair --secondary:\n%s", r.stdout)
	want := 0
	if c.how == dmgFlip {
		want = 1
	}
	m := regexp.MustCompile(`: (\d+) objects \(.*\) verified; (\d+) damaged, (\d+) replaced with the primary's intact copy`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || m[2] != strconv.Itoa(want) || m[3] != strconv.Itoa(want) ||
		(want == 1 && !strings.Contains(r.stdout, key+": primary")) {
		t.Errorf("vault repair --secondary: exit %d, want %d damaged copy of %s replaced:\n%s%s", r.code, want, key, r.stdout, r.stderr)
	}
	if dir := os.Getenv("VMVAULT_RECORD_HISTORIES"); dir != "" && want == 1 {
		// A history for testsuite/replay: a heal that replaced a copy.
		e.recordHistory(dir, "repair-secondary.json", workflows.RepairSecondaryWorkflowID)
	}
	// A second heal finds the secondary intact and writes nothing.
	var h vault.HealReport
	if code := b.cliJSON(&h, "vault", "repair", "--secondary", "--json"); code != 0 || h.DamagedCount != 0 || h.Objects == 0 {
		t.Errorf("a second vault repair --secondary: exit %d, %d objects verified, %d damaged: %+v", code, h.Objects, h.DamagedCount, h.Damaged)
	}
	if got, err := b.sec.Get(ctx, key); err != nil || sha(got) != b.pristine[key] {
		t.Errorf("vault repair --secondary did not heal the secondary's %s (%s): %v", key, c.how, err)
	} else {
		delete(b.secDamaged, key) // healed
	}
	if cj, named := secCheck(); named || len(b.damagedOf(cj.CheckReport, vm)) != 0 {
		t.Errorf("after vault repair --secondary, check --secondary still names damage: %v, manifests %+v", cj.Damaged, cj.CorruptManifests)
	}
	b.restore(chain[k], true, false)
	b.secondaryPristine()
}

type checkJSONOut struct {
	vault.CheckReport
	Comparison vault.Comparison `json:"comparison"`
}

// check runs vault check --json with args; it returns the report and the
// exit code.
func (b *dmgBench) check(args ...string) (vault.CheckReport, int) {
	var rep vault.CheckReport
	code := b.cliJSON(&rep, append([]string{"vault", "check", "--json"}, args...)...)
	return rep, code
}

func (b *dmgBench) cliJSON(v any, args ...string) int {
	b.t.Helper()
	r := b.e.cli(args...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		b.t.Fatalf("vmvault %s: exit %d, output %q: %v\n%s", strings.Join(args, " "), r.code, r.stdout, err, r.stderr)
	}
	return r.code
}

// damagedOf are the damaged points of vm that rep names.
func (b *dmgBench) damagedOf(rep vault.CheckReport, vm string) []string {
	var out []string
	for _, d := range rep.Damaged {
		if strings.HasPrefix(d, vm+"/") {
			out = append(out, d)
		}
	}
	return out
}

// restore restores p from the primary or the secondary and counts the
// outcome: a bit-exact restore, a clean failure of a point check names as
// damaged (named), or a lost or wrong one.
func (b *dmgBench) restore(p dmgPoint, secondary, named bool) {
	t, e := b.t, b.e
	dir := filepath.Join(t.TempDir(), "restore")
	args := []string{"restore", p.rp, "--disks", dir, "--wait"}
	where := "primary"
	if secondary {
		args, where = append(args, "--from-secondary"), "secondary"
	}
	began := time.Now()
	r := e.cli(args...)
	if r.code != 0 {
		lines := nonProgressLines(r.stderr)
		if !named {
			b.out.BytesLost += p.size
			t.Errorf("restore of %s from the %s failed, and check does not name it damaged: %s", p.rp, where, r.stderr)
			return
		}
		// A clear error is one line that says what is wrong with the data.
		clear := len(lines) == 1 && strings.HasPrefix(lines[0], "vmvault: ") && regexp.MustCompile(`corrupt data|missing data|not found|truncated`).MatchString(lines[0])
		if !clear {
			t.Errorf("restore of the damaged %s from the %s fails without saying why: %s", p.rp, where, r.stderr)
			return
		}
		b.out.FailedCleanly++
		t.Logf("restore of the damaged %s from the %s fails in %s: %s", p.rp, where, time.Since(began).Round(time.Second), lines[0])
		return
	}
	for d, h := range p.hash {
		got, err := vmfixture.SHA256(filepath.Join(dir, d+".raw"))
		if err != nil || got != h {
			b.out.WrongRestores++
			t.Errorf("restore of %s from the %s: disk %s sha256 %s (%v), source had %s", p.rp, where, d, got, err, h)
			return
		}
	}
	b.out.Restores++
}

// pointBlobs returns every blob rp references (roots, leaves, blocks),
// calling each (if not nil) with each and its role.
func pointBlobs(t *testing.T, v *vault.Vault, rp string, each func(format.ID, string)) map[format.ID]bool {
	t.Helper()
	ctx := context.Background()
	p, err := v.LoadRecoveryPoint(ctx, rp)
	if err != nil {
		t.Fatal(err)
	}
	out := map[format.ID]bool{}
	add := func(id format.ID, role string) {
		if id.IsZero() {
			return
		}
		out[id] = true
		if each != nil {
			each(id, role)
		}
	}
	for _, d := range p.Disks {
		if d.Root.IsZero() {
			continue
		}
		add(d.Root, "root")
		root, err := v.Repo().LoadRoot(ctx, d.Root)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range root.Leaves {
			add(l, "leaf")
			ids, err := v.Repo().LoadLeaf(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				add(id, "block")
			}
		}
	}
	return out
}

// othersBlobs are the blobs the points of every VM but vm reference, as far
// as they can be read.
func othersBlobs(v *vault.Vault, vm string) map[format.ID]bool {
	ctx := context.Background()
	out := map[format.ID]bool{}
	rps, _ := v.ListRecoveryPoints(ctx, "")
	for _, rp := range rps {
		if rp.VM == vm {
			continue
		}
		for _, d := range rp.Disks {
			if d.Root.IsZero() {
				continue
			}
			out[d.Root] = true
			root, err := v.Repo().LoadRoot(ctx, d.Root)
			if err != nil {
				continue
			}
			for _, l := range root.Leaves {
				out[l] = true
				ids, _ := v.Repo().LoadLeaf(ctx, l)
				for _, id := range ids {
					out[id] = true
				}
			}
		}
	}
	return out
}

// packIndex returns pack's index object and its key.
func (b *dmgBench) packIndex(pack format.ID) (format.PackIndex, string) {
	t := b.t
	ctx := context.Background()
	v := b.e.openVault()
	for k := range b.e.objects(format.KindIndex.Prefix()) {
		if id, _, ok := format.ParseIndexKey(k); ok && id == pack {
			pi, err := index.GetPackIndex(ctx, b.e.be, v.Repo().Keys(), k)
			if err != nil {
				t.Fatal(err)
			}
			return pi, k
		}
	}
	t.Fatalf("no index object of pack %s", pack.Short())
	return format.PackIndex{}, ""
}

// damage flips the byte at off (the middle if off < 0), cuts the object
// to half or deletes it.
func (b *dmgBench) damage(be storage.Backend, key, how string, off int64) {
	if how == dmgTruncate {
		off = -1
	}
	b.damageTo(be, key, how, off)
}

// damageTo flips the byte at at (the middle if at < 0), cuts the object
// to at bytes (to half if at < 0) or deletes it.
func (b *dmgBench) damageTo(be storage.Backend, key, how string, at int64) {
	t := b.t
	ctx := context.Background()
	if how == dmgDelete {
		if err := be.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := be.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 || at >= int64(len(data)) {
		at = int64(len(data)) / 2
	}
	if how == dmgFlip {
		data[at] ^= 0x40
	} else {
		data = data[:at]
	}
	if err := be.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// immutablePrefixes are the secondary's objects that replication never
// changes once written.
var immutablePrefixes = []string{format.KindPack.Prefix(), format.KindIndex.Prefix(), format.KindRecoveryPoint.Prefix()}

// snapshotSecondary remembers the bytes of every immutable object on the
// secondary not seen before (taken before any damage of this case).
func (b *dmgBench) snapshotSecondary() {
	ctx := context.Background()
	for _, p := range immutablePrefixes {
		if err := b.sec.List(ctx, p, func(key string, _ int64) error {
			if _, ok := b.pristine[key]; ok || b.secDamaged[key] {
				return nil
			}
			data, err := b.sec.Get(ctx, key)
			if err != nil {
				return err
			}
			b.pristine[key] = sha(data)
			return nil
		}); err != nil {
			b.t.Fatal(err)
		}
	}
}

// secondaryPristine fails the test if any immutable object on the
// secondary differs from its pristine copy (absent is allowed: a delete
// replicated by GC's log).
func (b *dmgBench) secondaryPristine() {
	ctx := context.Background()
	for key, want := range b.pristine {
		if b.secDamaged[key] {
			continue
		}
		data, err := b.sec.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			b.t.Fatal(err)
		}
		if sha(data) != want {
			b.t.Errorf("damage spread: the secondary's %s changed (%d bytes now)", key, len(data))
		}
	}
}
