package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/platform"
)

var errCrash = errors.New("simulated crash")

// twoDiskVM writes a stopped VM with os and data0 images filled with old.
func twoDiskVM(t *testing.T, root, name string, old map[string][]byte) {
	t.Helper()
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vm := platform.VM{Name: name, OS: platform.OSLinux, Power: platform.PowerStopped, Disks: []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.raw"},
		{Name: "data0", Role: platform.DiskData, File: "data0.raw"},
	}}
	for _, d := range vm.Disks {
		if err := os.WriteFile(filepath.Join(dir, d.File), old[d.Name], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := json.Marshal(vm)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func stageBoth(t *testing.T, p *images, name string, stage platform.RestoreStage, content map[string][]byte) {
	t.Helper()
	for disk, data := range content {
		w, err := p.StageDisk(context.Background(), name, disk, int64(len(data)), stage)
		if err != nil {
			t.Fatal(err)
		}
		w.WriteAt(data, 0)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func readImages(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, d := range []string{"os", "data0"} {
		data, err := os.ReadFile(filepath.Join(dir, d+".raw"))
		if err != nil {
			t.Fatal(err)
		}
		out[d] = data
	}
	return out
}

// A commit that dies between the two disks' renames is finished by a retry
// (a fresh platform, as after a worker restart), or undone by an abort.
func TestCommitCrashBetweenDisks(t *testing.T) {
	old := map[string][]byte{"os": bytes.Repeat([]byte("O"), 4096), "data0": bytes.Repeat([]byte("D"), 8192)}
	restored := map[string][]byte{"os": bytes.Repeat([]byte("o"), 8192), "data0": bytes.Repeat([]byte("d"), 4096)}
	for _, crashAt := range []string{"journal", "kept os", "disk os", "kept data0", "disk data0", "config"} {
		for _, then := range []string{"retry", "abort"} {
			t.Run(crashAt+"/"+then, func(t *testing.T) {
				root := t.TempDir()
				p, err := newImages(root)
				if err != nil {
					t.Fatal(err)
				}
				twoDiskVM(t, root, "vm1", old)
				const stage = "job 1"
				stageBoth(t, p, "vm1", stage, restored)
				p.hook = func(step string) error {
					if step == crashAt {
						return errCrash
					}
					return nil
				}
				if _, err := p.CommitRestore(context.Background(), "vm1", stage, platform.CommitOptions{}); !errors.Is(err, errCrash) {
					t.Fatalf("commit: %v, want the crash", err)
				}
				p2, _ := newImages(root)
				dir := filepath.Join(root, "vm1")
				switch then {
				case "retry":
					res, err := p2.CommitRestore(context.Background(), "vm1", stage, platform.CommitOptions{})
					if err != nil {
						t.Fatalf("retried commit: %v", err)
					}
					if got := readImages(t, dir); !bytes.Equal(got["os"], restored["os"]) || !bytes.Equal(got["data0"], restored["data0"]) {
						t.Fatal("retried commit did not put the restored images in place")
					}
					for disk, kept := range res.Kept {
						data, err := os.ReadFile(kept)
						if err != nil || !bytes.Equal(data, old[disk]) {
							t.Errorf("kept %s of %q: %v, not the old image", kept, disk, err)
						}
					}
					if len(res.Kept) != 2 {
						t.Errorf("Kept %v", res.Kept)
					}
					vm, err := p2.DescribeVM(context.Background(), "vm1")
					if err != nil || vm.Disks[0].SizeBytes != 8192 || vm.Disks[1].SizeBytes != 4096 {
						t.Errorf("vm after the retried commit: %+v, %v", vm, err)
					}
				case "abort":
					if err := p2.AbortRestore(context.Background(), "vm1", stage); err != nil {
						t.Fatalf("abort: %v", err)
					}
					if got := readImages(t, dir); !bytes.Equal(got["os"], old["os"]) || !bytes.Equal(got["data0"], old["data0"]) {
						t.Fatal("abort did not put the old images back")
					}
					vm, err := p2.DescribeVM(context.Background(), "vm1")
					if err != nil || vm.Disks[0].SizeBytes != 4096 || vm.Disks[1].SizeBytes != 8192 {
						t.Errorf("vm after abort: %+v, %v", vm, err)
					}
				}
				entries, _ := os.ReadDir(dir)
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), ".") {
						t.Errorf("left behind: %s", e.Name())
					}
				}
			})
		}
	}
}

// A crashed commit of a new VM: the retry finishes it; an abort removes it.
func TestNewVMCommitCrash(t *testing.T) {
	for _, then := range []string{"retry", "abort"} {
		t.Run(then, func(t *testing.T) {
			root := t.TempDir()
			p, _ := newImages(root)
			ctx := context.Background()
			const stage = "job-new"
			vm := platform.VM{Name: "fresh", OS: platform.OSLinux, Disks: []platform.Disk{
				{Name: "os", Role: platform.DiskOS, SizeBytes: 4096},
				{Name: "data0", Role: platform.DiskData, SizeBytes: 4096},
			}}
			if _, err := p.PrepareNewVM(ctx, vm, stage); err != nil {
				t.Fatal(err)
			}
			stageBoth(t, p, "fresh", stage, map[string][]byte{"os": []byte("boot"), "data0": []byte("data")})
			p.hook = func(step string) error {
				if step == "config" {
					return errCrash
				}
				return nil
			}
			if _, err := p.CommitRestore(ctx, "fresh", stage, platform.CommitOptions{}); !errors.Is(err, errCrash) {
				t.Fatal(err)
			}
			p2, _ := newImages(root)
			if then == "retry" {
				if _, err := p2.CommitRestore(ctx, "fresh", stage, platform.CommitOptions{}); err != nil {
					t.Fatal(err)
				}
				if _, err := p2.DescribeVM(ctx, "fresh"); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err := p2.AbortRestore(ctx, "fresh", stage); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Errorf("root holds %v after aborting a new vm", entries)
			}
		})
	}
}

// AbortRestore never removes a real VM, even one whose folder a stale
// marker of the stage is in.
func TestAbortNeverRemovesRealVM(t *testing.T) {
	root := t.TempDir()
	p, _ := newImages(root)
	old := map[string][]byte{"os": []byte("os"), "data0": []byte("data")}
	twoDiskVM(t, root, "real", old)
	os.WriteFile(filepath.Join(root, "real", restoreFile("s", "new")), []byte("{}"), 0o644)
	if err := p.AbortRestore(context.Background(), "real", "s"); err != nil {
		t.Fatal(err)
	}
	if got := readImages(t, filepath.Join(root, "real")); !bytes.Equal(got["os"], old["os"]) {
		t.Fatal("abort changed a real vm")
	}
	if _, err := p.DescribeVM(context.Background(), "real"); err != nil {
		t.Fatal(err)
	}
}
