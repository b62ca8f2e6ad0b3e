package activities

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// HostQueue is the task queue of a hypervisor host: its HostActivities.
func HostQueue(host string) string { return "vmvault-host-" + host }

// TransferQueue is the task queue of a host's long disk work (transfers,
// restores, kept snapshots): the same HostActivities, served with slots of
// their own, so multi-hour transfers never hold the slots that the host's
// short steps (DescribeVM, CreateSnapshot, DeleteSnapshot) need. Its prefix
// is not HostQueue's, so no host name makes one queue another's.
func TransferQueue(host string) string { return "vmvault-transfer-" + host }

// HostActivities are the activities that run on a hypervisor host: they
// reach the host's VMs through Platform and move disk data to and from Vault.
type HostActivities struct {
	Platform platform.Platform
	Vault    *vault.Vault
	// Secondary is the vault's secondary location: restores read from it.
	Secondary *Secondary
	// Signaler, when set, sends disk progress to the workflow now and then.
	Signaler Signaler
	// ProgressEvery is the shortest time between progress signals (default 2s);
	// it grows with the transfer's age so long jobs keep a short history.
	ProgressEvery time.Duration
	// TransferWorkers bounds the cores one disk transfer uses (0: all).
	TransferWorkers int
	// ReadLimit caps each disk transfer's read rate, bytes/s (0: no cap).
	ReadLimit int64
	// CBTAuditRate is the fraction of the blocks a CBT incremental takes
	// from the parent that it reads first, to check the tracking (0: none).
	CBTAuditRate float64
}

// VMInput names a VM of the host.
type VMInput struct {
	VM string `json:"vm"`
}

// VMList is a host's VMs, and the VM definitions it could not read: one bad
// folder must not hide the rest.
type VMList struct {
	VMs      []platform.VM `json:"vms"`
	Problems []string      `json:"problems,omitempty"`
}

// ListVMs lists the VMs of this host.
func (h *HostActivities) ListVMs(ctx context.Context) (VMList, error) {
	vms, err := h.Platform.ListVMs(ctx)
	if err != nil && !(errors.Is(err, platform.ErrInvalidVM) && vms != nil) {
		return VMList{}, classify(err)
	}
	out := VMList{VMs: vms}
	if err != nil {
		out.Problems = strings.Split(err.Error(), "\n")
	}
	return out, nil
}

// DescribeVM returns a VM's metadata, power state and disks.
func (h *HostActivities) DescribeVM(ctx context.Context, in VMInput) (platform.VM, error) {
	defer alive(ctx)()
	vm, err := h.Platform.DescribeVM(ctx, in.VM)
	return vm, classify(err)
}

// EnsureExtension installs the backup extension in a running VM, or checks it.
func (h *HostActivities) EnsureExtension(ctx context.Context, in VMInput) (platform.ExtensionStatus, error) {
	defer alive(ctx)()
	vm, err := h.Platform.DescribeVM(ctx, in.VM)
	if err != nil {
		return platform.ExtensionStatus{}, classify(err)
	}
	if vm.Extension.Installed && vm.Extension.Healthy {
		return vm.Extension, nil
	}
	activity.GetLogger(ctx).Info("installing backup extension", "vm", in.VM)
	st, err := h.Platform.InstallExtension(ctx, in.VM)
	return st, classify(err)
}

// SnapshotInput asks for a snapshot of a VM.
type SnapshotInput struct {
	VM          string               `json:"vm"`
	ID          string               `json:"id"`
	Consistency platform.Consistency `json:"consistency"`
}

// CreateSnapshot takes a snapshot; retried with the same id it is harmless.
// It heartbeats, so a cancel of the job reaches the platform (and the guest's
// pre-scripts) through ctx.
func (h *HostActivities) CreateSnapshot(ctx context.Context, in SnapshotInput) (platform.Snapshot, error) {
	defer alive(ctx)()
	s, err := h.Platform.CreateSnapshot(ctx, in.VM, platform.SnapshotRequest{ID: in.ID, Consistency: in.Consistency})
	if err == nil {
		faultpoint.Hit("snapshot.created")
	}
	return s, classify(err)
}

// CommitChanges tells a platform with changed-block tracking that a
// recovery point made from snap is durable, so it may drop the changes
// recorded before it; other platforms have nothing to do.
func (h *HostActivities) CommitChanges(ctx context.Context, snap platform.Snapshot) error {
	defer alive(ctx)()
	if bc, ok := h.Platform.(platform.BitmapCommitter); ok {
		return classify(bc.CommitChanges(ctx, snap))
	}
	return nil
}

// DeleteSnapshot removes a snapshot; a missing one is fine. A snapshot
// without a token is one whose CreateSnapshot never returned (the job was
// cancelled meanwhile): the platform removes what its id planned, if
// anything (platform.Platform.DeleteSnapshot).
func (h *HostActivities) DeleteSnapshot(ctx context.Context, snap platform.Snapshot) error {
	defer alive(ctx)()
	faultpoint.Hit("snapshot.delete")
	if err := h.Platform.DeleteSnapshot(ctx, snap); err != nil {
		return classify(err)
	}
	faultpoint.Hit("snapshot.deleted")
	return nil
}
