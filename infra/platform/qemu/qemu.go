package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/images"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

// SettingsFile is the name of a VM's QEMU settings in its folder.
const SettingsFile = "qemu.json"

// Settings say how to reach a VM's QEMU (qemu.json).
type Settings struct {
	QMPSocket   string            `json:"qmp_socket,omitempty"`
	AgentSocket string            `json:"agent_socket,omitempty"`
	Nodes       map[string]string `json:"nodes,omitempty"`
}

var validNode = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,30}$`)

// qmpTimeout bounds one conversation with a QEMU that does not answer.
const qmpTimeout = 30 * time.Second

type qemuPlatform struct {
	root string
	// vms is the images platform over the same folder: it reads and
	// validates vm.json, snapshots stopped VMs and runs staged restores.
	vms platform.Platform
}

var (
	_ platform.Platform        = (*qemuPlatform)(nil)
	_ platform.BitmapCommitter = (*qemuPlatform)(nil)
)

// New returns the qemu platform over the inventory folder, creating it if needed.
func New(inventory string) (platform.Platform, error) {
	vms, err := images.New(inventory)
	if err != nil {
		return nil, fmt.Errorf("qemu inventory: %w", err)
	}
	abs, err := filepath.Abs(inventory)
	if err != nil {
		return nil, err
	}
	return &qemuPlatform{root: abs, vms: vms}, nil
}

func (p *qemuPlatform) vmDir(name string) string { return filepath.Join(p.root, name) }

// settings reads and validates qemu.json of vm (defaults when absent); vm
// must be a described VM.
func (p *qemuPlatform) settings(vm platform.VM) (Settings, error) {
	path := filepath.Join(p.vmDir(vm.Name), SettingsFile)
	data, err := readSmall(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		data = nil
	case err != nil:
		return Settings{}, fmt.Errorf("%s: %w: vm %q: %v", path, platform.ErrInvalidVM, vm.Name, err)
	}
	return parseSettings(path, data, vm)
}

// parseSettings decodes and validates the qemu.json at path (data nil:
// there is none) of vm, whose folder is path's. Unknown fields are refused:
// qemu.json has few, and a misspelt socket would silently make a running
// VM look stopped. Errors wrap platform.ErrInvalidVM and name the file and
// the field.
func parseSettings(path string, data []byte, vm platform.VM) (Settings, error) {
	var s Settings
	if data != nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err := dec.Decode(&s)
		if err == nil && dec.More() {
			err = errors.New("data after the JSON object")
		}
		if err != nil {
			return Settings{}, fmt.Errorf("%s: %w: vm %q: %v", path, platform.ErrInvalidVM, vm.Name, err)
		}
	}
	invalid := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %w: vm %q: %s: %s", path, platform.ErrInvalidVM, vm.Name, field, fmt.Sprintf(format, args...))
	}
	dir := filepath.Dir(path)
	if s.QMPSocket == "" {
		s.QMPSocket = "qmp.sock"
	}
	if s.AgentSocket == "" {
		s.AgentSocket = "qga.sock"
	}
	for _, f := range []struct {
		field string
		sock  *string
	}{{"qmp_socket", &s.QMPSocket}, {"agent_socket", &s.AgentSocket}} {
		if !filepath.IsAbs(*f.sock) {
			if !filepath.IsLocal(*f.sock) {
				return Settings{}, invalid(f.field, "%q must be absolute or a path inside the vm folder", *f.sock)
			}
			*f.sock = filepath.Join(dir, *f.sock)
		}
		if len(*f.sock) > 107 {
			return Settings{}, invalid(f.field, "%q is longer than a unix socket path may be (107 bytes)", *f.sock)
		}
	}
	disks := make([]string, 0, len(s.Nodes))
	for disk := range s.Nodes {
		disks = append(disks, disk)
	}
	sort.Strings(disks) // the first bad entry in name order, the same every time
	nodes := map[string]string{}
	for _, disk := range disks {
		node := s.Nodes[disk]
		if _, ok := findDisk(vm, disk); !ok {
			return Settings{}, invalid("nodes."+disk, "vm.json has no disk %q", disk)
		}
		if !validNode.MatchString(node) {
			return Settings{}, invalid("nodes."+disk, "bad QEMU node name %q", node)
		}
		nodes[disk] = node
	}
	owner := map[string]string{}
	for _, d := range vm.Disks {
		if _, ok := nodes[d.Name]; !ok {
			nodes[d.Name] = "disk-" + d.Name
		}
		// Two disks on one node would fleece and write the same QEMU disk
		// twice, each under its own name.
		if other, ok := owner[nodes[d.Name]]; ok {
			return Settings{}, invalid("nodes."+d.Name, "node %q is disk %s's node too", nodes[d.Name], other)
		}
		owner[nodes[d.Name]] = d.Name
	}
	s.Nodes = nodes
	return s, nil
}

// readSmall reads a regular file of at most 1 MiB at path, without
// following a symlink, from the file it opened (not by its name again).
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 1<<20 {
		return nil, fmt.Errorf("%s is not a regular file of at most 1 MiB", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err == nil && len(data) > 1<<20 {
		err = fmt.Errorf("%s grew past 1 MiB while read", path)
	}
	return data, err
}

func findDisk(vm platform.VM, name string) (platform.Disk, bool) {
	for _, d := range vm.Disks {
		if d.Name == name {
			return d, true
		}
	}
	return platform.Disk{}, false
}

// dial connects to the VM's QMP socket; ok is false when nothing answers
// there (the VM is stopped).
func dial(ctx context.Context, s Settings) (c *qmp.Client, ok bool, err error) {
	st, err := os.Lstat(s.QMPSocket)
	if err != nil || st.Mode().Type() != os.ModeSocket {
		return nil, false, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err = qmp.Dial(dctx, s.QMPSocket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if isRefused(err) {
			return nil, false, nil // a socket left by a QEMU that is gone
		}
		return nil, false, err
	}
	return c, true, nil
}

// describe is images' description with the power state from QMP.
func (p *qemuPlatform) describe(ctx context.Context, name string) (platform.VM, Settings, error) {
	vm, err := p.vms.DescribeVM(ctx, name)
	if err != nil {
		return vm, Settings{}, err
	}
	s, err := p.settings(vm)
	if err != nil {
		return vm, s, err
	}
	c, ok, err := dial(ctx, s)
	if errors.Is(err, qmp.ErrProtocol) {
		// What answers there is no QEMU (or a broken one): qemu.json names
		// the wrong socket, which no retry mends.
		return vm, s, fmt.Errorf("vm %q: qmp_socket of %s: %w: %w", name, SettingsFile, platform.ErrInvalidVM, err)
	}
	if err != nil {
		return vm, s, fmt.Errorf("vm %q: qmp %s: %w", name, s.QMPSocket, err)
	}
	vm.Power = platform.PowerStopped
	if ok {
		c.Close()
		vm.Power = platform.PowerRunning
	}
	return vm, s, nil
}

func (p *qemuPlatform) DescribeVM(ctx context.Context, name string) (platform.VM, error) {
	vm, _, err := p.describe(ctx, name)
	return vm, err
}

// ListVMs lists the VMs of the inventory (see images.ListVMs for what is
// skipped) with their power state; bad entries are named in the error.
func (p *qemuPlatform) ListVMs(ctx context.Context) ([]platform.VM, error) {
	listed, lerr := p.vms.ListVMs(ctx)
	var (
		out  []platform.VM
		errs = []error{lerr}
	)
	for _, vm := range listed {
		vm, err := p.DescribeVM(ctx, vm.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, vm)
	}
	return out, errors.Join(errs...)
}

// refuseRunning fails with ErrVMRunning when the VM's QEMU answers.
func (p *qemuPlatform) refuseRunning(ctx context.Context, name, op string) error {
	vm, _, err := p.describe(ctx, name)
	if errors.Is(err, platform.ErrVMNotFound) {
		return nil // a VM being prepared: images decides
	}
	if err != nil {
		return err
	}
	if vm.Power == platform.PowerRunning {
		return fmt.Errorf("%s: vm %q is running (its QMP socket answers); stop it first: %w", op, name, platform.ErrVMRunning)
	}
	return nil
}

func (p *qemuPlatform) PrepareNewVM(ctx context.Context, vm platform.VM, stage platform.RestoreStage) (platform.VM, error) {
	return p.vms.PrepareNewVM(ctx, vm, stage)
}

func (p *qemuPlatform) StageDisk(ctx context.Context, vm, disk string, size int64, stage platform.RestoreStage) (platform.StagedDisk, error) {
	if err := p.refuseRunning(ctx, vm, fmt.Sprintf("stage disk %q", disk)); err != nil {
		return nil, err
	}
	return p.vms.StageDisk(ctx, vm, disk, size, stage)
}

// CommitRestore commits with the images platform (QEMU's own image locks
// refuse the commit too if the VM starts meanwhile), then writes qemu.json
// for a new VM so that Args can start it.
func (p *qemuPlatform) CommitRestore(ctx context.Context, vm string, stage platform.RestoreStage, opt platform.CommitOptions) (platform.CommitResult, error) {
	if err := p.refuseRunning(ctx, vm, "commit restore"); err != nil {
		return platform.CommitResult{}, err
	}
	res, err := p.vms.CommitRestore(ctx, vm, stage, opt)
	if err != nil {
		return res, err
	}
	path := filepath.Join(p.vmDir(vm), SettingsFile)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		s := Settings{QMPSocket: "qmp.sock", AgentSocket: "qga.sock", Nodes: map[string]string{}}
		for _, d := range res.VM.Disks {
			s.Nodes[d.Name] = "disk-" + d.Name
		}
		if err := writeFileAtomic(path, s); err != nil {
			return res, fmt.Errorf("commit restore %q of vm %q: write %s: %w", stage, vm, path, err)
		}
	}
	return res, nil
}

func (p *qemuPlatform) AbortRestore(ctx context.Context, vm string, stage platform.RestoreStage) error {
	return p.vms.AbortRestore(ctx, vm, stage)
}

func (p *qemuPlatform) Manages(path string) bool { return p.vms.Manages(path) }

func writeFileAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscallNoFollow, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
