package faultpoint

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// TestHelperProcess is the child of TestKill: it hits the points named in
// FAULTPOINT_HELPER_HITS in order, printing each hit before it.
func TestHelperProcess(t *testing.T) {
	seq := os.Getenv("FAULTPOINT_HELPER_HITS")
	if seq == "" {
		t.Skip("helper process of TestKill")
	}
	for i, name := range strings.Split(seq, ",") {
		fmt.Printf("hit %d %s\n", i+1, name)
		Hit(name)
	}
	fmt.Println("survived")
	os.Exit(0)
}

func runHelper(t *testing.T, spec string, hits ...string) (out string, signaled syscall.Signal) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), Env+"="+spec, "FAULTPOINT_HELPER_HITS="+strings.Join(hits, ","))
	b, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return string(b), ws.Signal()
		}
		t.Fatalf("helper exited %v: %s", err, b)
	} else if err != nil {
		t.Fatal(err)
	}
	return string(b), 0
}

func TestKill(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL")
	}
	for _, c := range []struct {
		spec string
		hits []string
		// last is the hit the process died at (0: it survived).
		last int
	}{
		{"transfer.pack", []string{"gc.mark", "transfer.pack", "transfer.pack"}, 2},
		{"transfer.pack@3", []string{"transfer.pack", "transfer.pack", "gc.mark", "transfer.pack", "transfer.pack"}, 4},
		{"gc.mark@2, transfer.pack@5", []string{"transfer.pack", "gc.mark", "gc.mark"}, 3},
		{"transfer.pack@4", []string{"transfer.pack", "transfer.pack"}, 0},
		{"", []string{"transfer.pack", "gc.mark"}, 0},
		{"no.such.point,transfer.pack@x", []string{"transfer.pack"}, 0},
	} {
		t.Run(c.spec, func(t *testing.T) {
			out, sig := runHelper(t, c.spec, c.hits...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if c.last == 0 {
				if sig != 0 || lines[len(lines)-1] != "survived" {
					t.Fatalf("want a survivor, got signal %v, output:\n%s", sig, out)
				}
				return
			}
			if sig != syscall.SIGKILL {
				t.Fatalf("want death by SIGKILL at hit %d, got signal %v, output:\n%s", c.last, sig, out)
			}
			if want := fmt.Sprintf("hit %d %s", c.last, c.hits[c.last-1]); lines[len(lines)-1] != want {
				t.Fatalf("died after %q, want after %q", lines[len(lines)-1], want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	got, err := parse(" transfer.pack@2,gc.mark ,, transfer.pack@5")
	if err != nil || fmt.Sprint(got) != "map[gc.mark:[1] transfer.pack:[2 5]]" {
		t.Fatalf("parse: %v %v", got, err)
	}
	if _, err := parse("gc.mark@0,nope"); err == nil || !strings.Contains(err.Error(), `"gc.mark@0"`) || !strings.Contains(err.Error(), `"nope": no such fault point`) {
		t.Fatalf("parse of bad items: %v", err)
	}
}

// Hit costs nothing when nothing is armed.
func TestUnarmed(t *testing.T) {
	if err := arm(""); err != nil {
		t.Fatal(err)
	}
	if Armed() {
		t.Fatal("armed with an empty spec")
	}
	if n := testing.AllocsPerRun(100, func() { Hit("transfer.pack") }); n != 0 {
		t.Fatalf("Hit allocates %v times unarmed", n)
	}
}

func BenchmarkHitUnarmed(b *testing.B) {
	_ = arm("")
	for b.Loop() {
		Hit("transfer.pack")
	}
}

// The code hits exactly the listed points, each listed once.
func TestPointsMatchCode(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`faultpoint\.Hit\("([^"]+)"\)`)
	used := map[string][]string{}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			rel, _ := filepath.Rel(root, p)
			used[m[1]] = append(used[m[1]], rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, p := range Points {
		if listed[p.Name] {
			t.Errorf("%s listed twice", p.Name)
		}
		listed[p.Name] = true
		if p.Phase == "" || p.Where == "" {
			t.Errorf("%s: phase and where must be set", p.Name)
		}
		if len(used[p.Name]) == 0 {
			t.Errorf("%s is listed but never hit", p.Name)
		}
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !listed[n] {
			t.Errorf("%s is hit in %v but not listed in Points", n, used[n])
		}
	}
}
