package qemu

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/platform"
)

// FuzzSettings: any qemu.json either fails with ErrInvalidVM naming the
// file, or gives settings with both sockets inside the VM folder or
// absolute and short enough for a unix socket, one valid and distinct QEMU
// node for every disk of vm.json and none for another, that read back the
// same when written out.
func FuzzSettings(f *testing.F) {
	f.Add([]byte(`{"qmp_socket": "qmp.sock", "agent_socket": "qga.sock", "nodes": {"os": "disk-os"}}`))
	f.Add([]byte(`{"qmp_socket": "/run/qemu/web1.qmp", "nodes": {"data0": "drive-virtio-disk1"}}`))
	f.Add([]byte(`{"nodes": {"data0": "disk-os"}}`))
	f.Add([]byte(`{"qmp_socket": "../x.sock"}`))
	f.Add([]byte(`{}`))
	const dir = "/srv/qemu/web1"
	path := filepath.Join(dir, SettingsFile)
	vm := platform.VM{Name: "web1", Disks: []platform.Disk{{Name: "os", Role: platform.DiskOS}, {Name: "data0", Role: platform.DiskData}, {Name: "temp", Role: platform.DiskTemp}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseSettings(path, data, vm)
		if err != nil {
			if !errors.Is(err, platform.ErrInvalidVM) || !strings.HasPrefix(err.Error(), path+": ") {
				t.Fatalf("error %q: want ErrInvalidVM naming %s", err, path)
			}
			return
		}
		for _, sock := range []string{s.QMPSocket, s.AgentSocket} {
			if !filepath.IsAbs(sock) || len(sock) > 107 {
				t.Fatalf("socket %q", sock)
			}
		}
		if len(s.Nodes) != len(vm.Disks) {
			t.Fatalf("nodes %v for disks %v", s.Nodes, vm.Disks)
		}
		seen := map[string]bool{}
		for _, d := range vm.Disks {
			n, ok := s.Nodes[d.Name]
			if !ok || !validNode.MatchString(n) || seen[n] {
				t.Fatalf("disk %s: node %q in %v", d.Name, n, s.Nodes)
			}
			seen[n] = true
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := parseSettings(path, again, vm)
		if err != nil {
			t.Fatalf("written settings do not read: %v\n%s", err, again)
		}
		if b, _ := json.Marshal(s2); string(b) != string(again) {
			t.Fatalf("settings changed on a round trip:\n%s\n%s", again, b)
		}
	})
}
