package qemu

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vmvault/vmvault/infra/platform"
)

// Args returns the qemu-system-x86_64 arguments that start VM name of the
// inventory as its inventory entry describes it: memory, CPUs, its QMP
// socket, the guest agent's channel (org.qemu.guest_agent.0 on the agent
// socket), and each disk as a -blockdev node with the entry's node name
// under a virtio-blk device "dev-<disk>". The caller adds the accelerator,
// display, firmware and network it wants.
func Args(ctx context.Context, inventory, name string) ([]string, error) {
	pl, err := New(inventory)
	if err != nil {
		return nil, err
	}
	p := pl.(*qemuPlatform)
	vm, err := p.vms.DescribeVM(ctx, name)
	if err != nil {
		return nil, err
	}
	s, err := p.settings(vm)
	if err != nil {
		return nil, err
	}
	esc := func(v string) string { return strings.ReplaceAll(v, ",", ",,") }
	args := []string{"-name", esc(vm.Name), "-qmp", "unix:" + esc(s.QMPSocket) + ",server=on,wait=off",
		"-chardev", "socket,path=" + esc(s.AgentSocket) + ",server=on,wait=off,id=vmvault-qga",
		"-device", "virtio-serial,id=vmvault-serial",
		"-device", "virtserialport,chardev=vmvault-qga,name=org.qemu.guest_agent.0"}
	if vm.MemoryMB > 0 {
		args = append(args, "-m", fmt.Sprint(vm.MemoryMB))
	}
	if vm.CPUs > 0 {
		args = append(args, "-smp", fmt.Sprint(vm.CPUs))
	}
	for i, d := range vm.Disks {
		file := fmt.Sprintf("vmvault-file%d", i)
		args = append(args,
			"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=%s", esc(filepath.Join(p.vmDir(vm.Name), d.File)), file),
			"-blockdev", fmt.Sprintf("driver=%s,file=%s,node-name=%s", d.Format, file, s.Nodes[d.Name]),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=%s,id=dev-%s", s.Nodes[d.Name], d.Name))
		if d.Role == platform.DiskOS {
			args[len(args)-1] += ",bootindex=0"
		}
	}
	return args, nil
}
