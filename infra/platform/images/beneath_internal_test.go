package images

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/platform"
)

// bothResolvers runs f with openat2 and as on a kernel without it.
func bothResolvers(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("openat-walk", func(t *testing.T) {
		noOpenat2.Store(true)
		defer noOpenat2.Store(false)
		f(t)
	})
}

func writeVM(t *testing.T, dir string, vm platform.VM) {
	t.Helper()
	data, _ := json.Marshal(vm)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The reproduced defect: a symlinked disk file, or a symlinked folder in
// "file": "sub/x.raw", made backups read and restores write any file.
func TestSymlinkEscapesRefused(t *testing.T) {
	bothResolvers(t, func(t *testing.T) {
		for _, layout := range []string{"file", "folder", "vm.json"} {
			t.Run(layout, func(t *testing.T) {
				base := t.TempDir()
				root := filepath.Join(base, "root")
				p, err := newImages(root)
				if err != nil {
					t.Fatal(err)
				}
				outside := filepath.Join(base, "outside")
				os.MkdirAll(outside, 0o755)
				secret := filepath.Join(outside, "x.raw")
				os.WriteFile(secret, []byte(strings.Repeat("secret!!", 512)), 0o600)
				dir := filepath.Join(root, "vm1")
				os.MkdirAll(dir, 0o755)
				os.WriteFile(filepath.Join(dir, "os.raw"), make([]byte, 4096), 0o600)
				vm := platform.VM{Name: "vm1", OS: platform.OSLinux, Disks: []platform.Disk{
					{Name: "os", Role: platform.DiskOS, File: "os.raw"},
					{Name: "data0", Role: platform.DiskData, File: "x.raw"},
				}}
				switch layout {
				case "file":
					os.Symlink(secret, filepath.Join(dir, "x.raw"))
				case "folder":
					vm.Disks[1].File = "sub/x.raw"
					os.Symlink(outside, filepath.Join(dir, "sub"))
				case "vm.json":
					os.WriteFile(filepath.Join(dir, "x.raw"), make([]byte, 4096), 0o600)
					writeVM(t, outside, vm)
					os.Symlink(filepath.Join(outside, ConfigFile), filepath.Join(dir, ConfigFile))
				}
				if layout != "vm.json" {
					writeVM(t, dir, vm)
				}
				ctx := context.Background()
				refused := func(op string, err error) {
					t.Helper()
					if !errors.Is(err, platform.ErrInvalidVM) {
						t.Fatalf("%s: got %v, want ErrInvalidVM", op, err)
					}
					want := []string{`"vm1"`}
					if layout != "vm.json" {
						want = append(want, `"data0"`, filepath.Join(dir, vm.Disks[1].File))
					}
					for _, w := range want {
						if !strings.Contains(err.Error(), w) {
							t.Errorf("%s: error %q does not name %s", op, err, w)
						}
					}
				}
				_, err = p.DescribeVM(ctx, "vm1")
				refused("DescribeVM", err)
				_, err = p.CreateSnapshot(ctx, "vm1", platform.SnapshotRequest{ID: "s"})
				refused("CreateSnapshot", err)
				_, err = p.StageDisk(ctx, "vm1", "data0", 4096, "job")
				refused("StageDisk", err)
				if layout != "vm.json" {
					// A snapshot token naming the file, as one taken before
					// the symlink appeared would.
					tok, _ := json.Marshal(token{Version: tokenVersion, Disks: map[string]fingerprint{"data0": {File: vm.Disks[1].File, Size: 4096}}})
					_, err = p.OpenDisk(ctx, platform.Snapshot{ID: "s", VM: "vm1", Token: string(tok)}, "data0")
					refused("OpenDisk", err)
				}
				if got, _ := os.ReadFile(secret); string(got) != strings.Repeat("secret!!", 512) {
					t.Fatal("the file outside changed")
				}
				if entries, _ := os.ReadDir(outside); len(entries) != map[string]int{"vm.json": 2}[layout]+map[bool]int{true: 1}[layout != "vm.json"] {
					t.Errorf("files appeared outside: %v", entries)
				}
			})
		}
	})
}

func TestVMFolderSymlinkRefused(t *testing.T) {
	bothResolvers(t, func(t *testing.T) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		p, _ := newImages(root)
		elsewhere := filepath.Join(base, "elsewhere")
		os.MkdirAll(elsewhere, 0o755)
		os.WriteFile(filepath.Join(elsewhere, "os.raw"), make([]byte, 4096), 0o600)
		writeVM(t, elsewhere, platform.VM{Name: "vm1", OS: platform.OSLinux, Disks: []platform.Disk{{Name: "os", Role: platform.DiskOS}}})
		os.Symlink(elsewhere, filepath.Join(root, "vm1"))
		ctx := context.Background()
		if _, err := p.DescribeVM(ctx, "vm1"); !errors.Is(err, platform.ErrInvalidVM) {
			t.Errorf("DescribeVM: %v", err)
		}
		if _, err := p.StageDisk(ctx, "vm1", "os", 4096, "job"); !errors.Is(err, platform.ErrInvalidVM) {
			t.Errorf("StageDisk: %v", err)
		}
		if vms, _ := p.ListVMs(ctx); len(vms) != 0 {
			t.Errorf("ListVMs follows a symlinked folder: %v", vms)
		}
		if _, err := p.PrepareNewVM(ctx, platform.VM{Name: "vm1", OS: platform.OSLinux, Disks: []platform.Disk{{Name: "os", Role: platform.DiskOS, SizeBytes: 1}}}, "job"); !errors.Is(err, platform.ErrVMExists) {
			t.Errorf("PrepareNewVM over a symlink: %v", err)
		}
	})
}

func TestManages(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	p, _ := newImages(root)
	os.MkdirAll(filepath.Join(root, "vm1"), 0o755)
	os.Symlink(filepath.Join(root, "vm1"), filepath.Join(base, "into-root"))
	os.Symlink(base, filepath.Join(base, "loop"))
	for path, want := range map[string]bool{
		root:                                       true,
		filepath.Join(root, "vm1"):                 true,
		filepath.Join(root, "vm1", "new", "d"):     true,
		filepath.Join(root, "..", "root", "x"):     true,
		filepath.Join(base, "into-root"):           true,
		filepath.Join(base, "into-root", "a", "b"): true,
		filepath.Join(base, "loop", "root", "vm1"): true,
		base:                                   false,
		filepath.Join(base, "rootless"):        false,
		filepath.Join(base, "restores", "vm1"): false,
	} {
		if got := p.Manages(path); got != want {
			t.Errorf("Manages(%s) = %v, want %v", path, got, want)
		}
	}
}

func TestFieldErrors(t *testing.T) {
	for js, want := range map[string]string{
		`{"os":"linux","disks":[{"name":"os","role":"os"},{"name":"d","role":"data","size_bytes":-5}]}`: "disks[1].size_bytes: negative (-5)",
		`{"os":"linux","cpu":-1,"disks":[{"name":"os","role":"os"}]}`:                                   "cpu: negative (-1)",
		`{"os":"beos","disks":[{"name":"os","role":"os"}]}`:                                             "os: ",
		`{"os":"linux","disks":[{"name":"os","role":"os","file":"a/.x.raw"}]}`:                          "disks[0].file: ",
		`{"os":"linux","disks":[{"name":"os","role":"os","file":"../x.raw"}]}`:                          "disks[0].file: ",
		`{"os":"linux","disks":[{"name":"os","role":"os"},{"name":"d","role":"data","lun":99}]}`:        "disks[1].lun: 99 is outside",
		`{"os":"linux","disks":[]}`: "disks: 0 os disks",
		`{"os":"linux","future_field":{"x":1},"disks":[{"name":"os","role":"os"}]}`: "",
	} {
		_, err := parseConfig([]byte(js), "vm1")
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", js, err)
			}
			continue
		}
		if !errors.Is(err, platform.ErrInvalidVM) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", js, err, want)
		}
	}
}
