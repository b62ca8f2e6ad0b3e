package e2e

import (
	"fmt"
	"hash/fnv"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The fault suite's figures. Every fault scenario records its outcome with
// recordFaults; TestMain prints the table after the run and, when
// VMVAULT_FAULTS_REPORT names a file, writes it there (make faults puts it
// into RELIABILITY.md). VMVAULT_FAULTS=full runs the whole matrix, else each
// scenario runs its short, seeded form; VMVAULT_FAULTS_SEED picks the seed.

// faultOutcome is one scenario's line in the table.
type faultOutcome struct {
	Scenario string
	// Faults is how many faults were injected (kills, restarts, proxy
	// errors, flipped or truncated objects, full disks, hosts away).
	Faults int
	// Completed and FailedCleanly count the jobs: a clean failure has a
	// one-line reason and leaves nothing behind.
	Completed, FailedCleanly int
	// Restores counts restores compared bit for bit with their source.
	Restores int
	// BytesLost is what a point that said it succeeded could not give back;
	// WrongRestores counts restores that differ from their source; Leaks
	// counts snapshots, frozen guests, stray processes and durable packs
	// uploaded twice. All three must be 0.
	BytesLost     int64
	WrongRestores int
	Leaks         int
}

var faultTally struct {
	sync.Mutex
	rows []faultOutcome
}

// recordFaults adds a scenario's outcome to the table and fails the test on
// any lost byte, wrong restore or leak.
func recordFaults(t *testing.T, o faultOutcome) {
	t.Helper()
	if o.Scenario == "" {
		o.Scenario = t.Name()
	}
	faultTally.Lock()
	faultTally.rows = append(faultTally.rows, o)
	faultTally.Unlock()
	if o.BytesLost != 0 || o.WrongRestores != 0 || o.Leaks != 0 {
		t.Errorf("faults %s: %d bytes lost, %d wrong restores, %d leaks (all must be 0)", o.Scenario, o.BytesLost, o.WrongRestores, o.Leaks)
	}
}

// faultsFull reports whether the whole matrix runs (make faults).
func faultsFull() bool { return os.Getenv("VMVAULT_FAULTS") == "full" }

// faultSeed is the suite's seed: VMVAULT_FAULTS_SEED, else a fixed one, so a
// run is repeatable; each scenario derives its own stream from it and its name.
func faultSeed() int64 {
	if s := os.Getenv("VMVAULT_FAULTS_SEED"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return 16
}

// faultRand is the scenario's seeded random source.
func faultRand(t *testing.T) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return rand.New(rand.NewSource(faultSeed() ^ int64(h.Sum64())))
}

// pickFaults returns the points a scenario runs: all of them under
// VMVAULT_FAULTS=full, else a seeded sample of n.
func pickFaults[T any](t *testing.T, all []T, n int) []T {
	if faultsFull() || n >= len(all) {
		return all
	}
	r := faultRand(t)
	idx := r.Perm(len(all))[:n]
	sort.Ints(idx)
	out := make([]T, 0, n)
	for _, i := range idx {
		out = append(out, all[i])
	}
	return out
}

// faultTable renders the recorded outcomes with a total line; "" when no
// scenario ran.
func faultTable() string {
	faultTally.Lock()
	defer faultTally.Unlock()
	if len(faultTally.rows) == 0 {
		return ""
	}
	rows := append([]faultOutcome(nil), faultTally.rows...)
	sort.Slice(rows, func(i, j int) bool { return rows[i].Scenario < rows[j].Scenario })
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %s form\n\n", faultSeed(), map[bool]string{true: "full", false: "short"}[faultsFull()])
	b.WriteString("| scenario | faults injected | jobs completed | jobs failed cleanly | restores verified | bytes lost | wrong restores | leaks |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var sum faultOutcome
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d |\n", r.Scenario, r.Faults, r.Completed, r.FailedCleanly, r.Restores, r.BytesLost, r.WrongRestores, r.Leaks)
		sum.Faults += r.Faults
		sum.Completed += r.Completed
		sum.FailedCleanly += r.FailedCleanly
		sum.Restores += r.Restores
		sum.BytesLost += r.BytesLost
		sum.WrongRestores += r.WrongRestores
		sum.Leaks += r.Leaks
	}
	fmt.Fprintf(&b, "| **total** | %d | %d | %d | %d | %d | %d | %d |\n", sum.Faults, sum.Completed, sum.FailedCleanly, sum.Restores, sum.BytesLost, sum.WrongRestores, sum.Leaks)
	return b.String()
}

// reportFaults prints the table and writes VMVAULT_FAULTS_REPORT; called by
// TestMain after the run.
func reportFaults() {
	tbl := faultTable()
	if tbl == "" {
		return
	}
	fmt.Println("\nfault suite:\n" + tbl)
	if f := os.Getenv("VMVAULT_FAULTS_REPORT"); f != "" {
		if err := os.WriteFile(f, []byte(tbl), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "fault report:", err)
		}
	}
}
