package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/testsuite/harness"
	"github.com/vmvault/vmvault/workflows"
)

// busyHost stands in for a host's activities: its transfers run until
// released, its short steps answer at once and say when they ran.
type busyHost struct {
	disks    map[string]int // disks per VM
	release  chan struct{}
	running  atomic.Int32 // transfers running now
	most     atomic.Int32 // most transfers running at once
	snapshot chan string  // VMs whose CreateSnapshot ran
	deleted  chan string  // VMs whose DeleteSnapshot ran
}

func (h *busyHost) DescribeVM(_ context.Context, in activities.VMInput) (platform.VM, error) {
	vm := platform.VM{Name: in.VM, OS: platform.OSLinux, Power: platform.PowerStopped}
	for i := range h.disks[in.VM] {
		role := platform.DiskData
		if i == 0 {
			role = platform.DiskOS
		}
		vm.Disks = append(vm.Disks, platform.Disk{Name: fmt.Sprintf("d%d", i), Role: role, SizeBytes: 1 << 30})
	}
	return vm, nil
}

func (h *busyHost) ExpireKept(context.Context, activities.ExpireKeptInput) (activities.ExpireKeptResult, error) {
	return activities.ExpireKeptResult{}, nil
}

func (h *busyHost) CreateSnapshot(_ context.Context, in activities.SnapshotInput) (platform.Snapshot, error) {
	h.snapshot <- in.VM
	return platform.Snapshot{ID: in.ID, VM: in.VM, Consistency: platform.CrashConsistent, Token: "t-" + in.ID}, nil
}

func (h *busyHost) TransferDisk(ctx context.Context, in activities.TransferDiskInput) (activities.TransferDiskResult, error) {
	n := h.running.Add(1)
	defer h.running.Add(-1)
	for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return activities.TransferDiskResult{}, ctx.Err()
		case <-h.release:
			return activities.TransferDiskResult{}, fmt.Errorf("released")
		case <-t.C:
			activity.RecordHeartbeat(ctx)
		}
	}
}

func (h *busyHost) DeleteSnapshot(_ context.Context, s platform.Snapshot) error {
	h.deleted <- s.VM
	return nil
}

func (h *busyHost) CommitChanges(context.Context, platform.Snapshot) error { return nil }

type idleVault struct{}

func (*idleVault) PrepareBackup(context.Context, activities.PrepareBackupInput) (activities.PrepareBackupResult, error) {
	return activities.PrepareBackupResult{Vault: activities.VaultPin{ID: "v1", Location: "file:///v"}}, nil
}

// With every transfer slot of a host taken by long disk transfers, the
// host's short steps still run at once: a second backup takes its snapshot,
// and once cancelled deletes it, while the first backup's transfers keep
// every transfer slot. Before, the short steps queued behind the transfers
// on the same slots until they timed out.
func TestShortStepsDoNotQueueBehindTransfers(t *testing.T) {
	tp := harness.StartTemporal(t)
	c := tp.Client(t)
	const central, host = "central-test", "h1"
	h := &busyHost{disks: map[string]int{"big": transferSlots + 4, "small": 1}, release: make(chan struct{}),
		snapshot: make(chan string, 10), deleted: make(chan string, 10)}
	cw := worker.New(c, central, worker.Options{})
	workflows.RegisterWorkflows(cw)
	cw.RegisterActivity(&idleVault{})
	ws := append([]worker.Worker{cw}, hostWorkers(c, host, func(r workflows.ActivityRegistry) { r.RegisterActivity(h) })...)
	for _, w := range ws {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(h.release) })
		for _, w := range ws {
			w.Stop()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := func(vm string) client.WorkflowRun {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.BackupWorkflowID(vm), TaskQueue: central},
			workflows.BackupVM, workflows.BackupVMInput{VM: vm, Host: host})
		if err != nil {
			t.Fatal(err)
		}
		return run
	}
	waitFor := func(ch chan string, vm, what string, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case got := <-ch:
				if got == vm {
					return
				}
			case <-deadline:
				t.Fatalf("%s of vm %s did not run within %s (transfers running: %d)", what, vm, within, h.running.Load())
			}
		}
	}

	start("big")
	for deadline := time.Now().Add(time.Minute); h.running.Load() < transferSlots; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d transfers started", h.running.Load(), transferSlots)
		}
	}
	small := start("small")
	waitFor(h.snapshot, "small", "CreateSnapshot", 20*time.Second)
	time.Sleep(2 * time.Second) // the small backup's transfer is queued behind the big one's
	if err := c.CancelWorkflow(ctx, small.GetID(), small.GetRunID()); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitFor(h.deleted, "small", "DeleteSnapshot", 20*time.Second)
	t.Logf("snapshot deleted %s after the cancel, with %d transfers running", time.Since(began).Round(time.Millisecond), h.running.Load())
	if m := h.most.Load(); m > transferSlots {
		t.Fatalf("%d transfers ran at once, over the %d transfer slots", m, transferSlots)
	}
}
