package images

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/platform"
)

// FuzzVMJSON: parsing and normalizing any vm.json never panics, fails only
// with ErrInvalidVM or ErrNotSupported, and what it accepts is a definition
// whose disk files stay inside the folder and that normalizes to itself.
func FuzzVMJSON(f *testing.F) {
	f.Add([]byte(`{"name":"vm1","os":"linux","disks":[{"name":"os","role":"os","size_bytes":4096}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		vm, err := parseConfig(data, "vm1")
		if err != nil {
			if !errors.Is(err, platform.ErrInvalidVM) && !errors.Is(err, platform.ErrNotSupported) {
				t.Fatalf("error %v wraps neither ErrInvalidVM nor ErrNotSupported", err)
			}
			return
		}
		for _, d := range vm.Disks {
			if !filepath.IsLocal(d.File) || d.File == ConfigFile || strings.HasPrefix(d.File, ".") || strings.Contains(d.File, "/.") {
				t.Fatalf("accepted disk file %q", d.File)
			}
			if d.SizeBytes < 0 {
				t.Fatalf("accepted size %d", d.SizeBytes)
			}
		}
		again, err := json.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		vm2, err := parseConfig(again, "vm1")
		if err != nil {
			t.Fatalf("a normalized definition does not parse again: %v", err)
		}
		if b, _ := json.Marshal(vm2); string(b) != string(again) {
			t.Fatalf("normalizing is not idempotent:\n%s\n%s", again, b)
		}
	})
}
