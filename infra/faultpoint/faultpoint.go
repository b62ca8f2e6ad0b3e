package faultpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Env is the variable that arms fault points.
const Env = "VMVAULT_FAULTPOINT"

// Point is a named place where the process may be killed.
type Point struct {
	Name  string
	Phase string
	// Where says what is durable when the process dies there.
	Where string
}

// Points lists every fault point. Names are stable: tests and runbooks
// refer to them.
var Points = []Point{
	{"snapshot.created", "snapshot", "the snapshot is taken; CreateSnapshot has not returned"},
	{"backup.prepared", "snapshot", "the parent is chosen; PrepareBackup has not returned"},
	{"transfer.pack", "transfer", "a pack object is stored, its index object is not (use @n for the n-th pack of the process)"},
	{"transfer.packindex", "transfer", "a pack and its index object are stored (use @n)"},
	{"transfer.checkpoint", "transfer", "a checkpoint object is stored, not yet heartbeated (use @n)"},
	{"transfer.done", "transfer", "a disk's tree is durable and its checkpoint deleted; TransferDisk has not returned"},
	{"commit.manifest", "commit", "the recovery point manifest is written; SaveRecoveryPoint has not returned"},
	{"snapshot.delete", "snapshot deletion", "the point is saved; the snapshot is not deleted yet"},
	{"snapshot.deleted", "snapshot deletion", "the snapshot is deleted; DeleteSnapshot has not returned"},
	{"restore.write", "restore", "some leaves of a disk are written to its staging file (use @n for the n-th leaf)"},
	{"restore.written", "restore", "a disk's data is written and closed in its staging file; RestoreDisk has not returned"},
	{"restore.journal", "restore commit", "the commit journal is written, nothing renamed yet (images VM targets)"},
	{"restore.commit", "restore commit", "a staged disk is renamed into place, others may not be (use @n)"},
	{"restore.config", "restore commit", "every disk and vm.json are in place; the journal still says uncommitted (images VM targets)"},
	{"restore.committed", "restore commit", "the commit is complete; CommitRestore has not returned"},
	{"gc.mark", "gc mark", "gc/candidates is written; GCMark has not returned"},
	{"gc.sweep", "gc sweep", "a candidate pack and its index object are deleted, others not (use @n)"},
	{"gc.swept", "gc sweep", "every due pack is deleted; gc/candidates and gc/last are not rewritten yet"},
	{"retention.expire", "retention", "a recovery point is soft-deleted, others of the VM not yet (use @n)"},
	{"retention.purge", "retention", "a soft-deleted point's tombstone and manifest are purged, others not (use @n)"},
	{"replicate.copy", "replication", "an object is copied to the secondary, others not (use @n)"},
	{"replicate.done", "replication", "the secondary holds everything and replication/last; ReplicateVault has not returned"},
	{"repair.reindex", "repair", "a pack's index object is written again, others not (use @n)"},
	{"repair.unindex", "repair", "the deletion log names lost packs; their index objects are not deleted yet"},
	{"check.read", "check", "a pack is read and verified by check --read-data (use @n)"},
	{"heal.replace", "repair --secondary", "a damaged copy on the secondary is replaced with the primary's, others not yet (use @n)"},
}

var (
	armed   atomic.Bool
	mu      sync.Mutex
	targets map[string][]int // point -> the hit counts that kill
	hits    map[string]int
)

func init() {
	if err := arm(os.Getenv(Env)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Env, err)
	}
}

// arm parses spec ("name" or "name@n", comma separated) and arms its points.
func arm(spec string) error {
	t, err := parse(spec)
	mu.Lock()
	targets, hits = t, map[string]int{}
	mu.Unlock()
	armed.Store(len(t) > 0)
	return err
}

func parse(spec string) (map[string][]int, error) {
	known := map[string]bool{}
	for _, p := range Points {
		known[p.Name] = true
	}
	out := map[string][]int{}
	var bad []string
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, nth, ok := strings.Cut(item, "@")
		n := 1
		if ok {
			v, err := strconv.Atoi(nth)
			if err != nil || v < 1 {
				bad = append(bad, fmt.Sprintf("%q: want name@n with n >= 1", item))
				continue
			}
			n = v
		}
		if !known[name] {
			bad = append(bad, fmt.Sprintf("%q: no such fault point", name))
			continue
		}
		out[name] = append(out[name], n)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("ignored %s", strings.Join(bad, ", "))
	}
	return out, nil
}

// Armed reports whether any fault point is armed (the worker says so at start).
func Armed() bool { return armed.Load() }

// Hit marks that the process reached the point name; if that point is armed
// for this hit, the process kills itself with SIGKILL and Hit never returns.
func Hit(name string) {
	if !armed.Load() {
		return
	}
	hit(name)
}

func hit(name string) {
	mu.Lock()
	want, ok := targets[name]
	if !ok {
		mu.Unlock()
		return
	}
	hits[name]++
	n := hits[name]
	mu.Unlock()
	for _, w := range want {
		if w == n {
			fmt.Fprintf(os.Stderr, "faultpoint %s@%d: killing process %d with SIGKILL\n", name, n, os.Getpid())
			kill()
		}
	}
}
