package qemu_test

import (
	"context"
	"testing"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu"
)

// A snapshot whose token never came back (the job was cancelled while
// CreateSnapshot ran) is deleted by its id alone: the fleecing of a
// running VM, and the qemu-nbd of a stopped one, are gone after it; an id
// that never made anything, or a VM that is gone, is not an error.
func TestDeleteByPlannedID(t *testing.T) {
	ctx := context.Background()
	t.Run("running", func(t *testing.T) {
		v := newLiveVM(t)
		v.snapshot(t, "planned")
		if err := v.p.DeleteSnapshot(ctx, platform.Snapshot{ID: "planned", VM: "live"}); err != nil {
			t.Fatal(err)
		}
		if left := v.leftovers(t); len(left) > 0 {
			t.Errorf("left after deleting by the planned id: %v", left)
		}
		if err := v.p.DeleteSnapshot(ctx, platform.Snapshot{ID: "never-made", VM: "live"}); err != nil {
			t.Errorf("deleting a snapshot never made: %v", err)
		}
	})
	t.Run("stopped qcow2", func(t *testing.T) {
		needTools(t)
		root := t.TempDir()
		dir := qcow2VM(t, root)
		p, _ := qemu.New(root)
		if _, err := p.CreateSnapshot(ctx, "vm", platform.SnapshotRequest{ID: "planned"}); err != nil {
			t.Fatal(err)
		}
		if len(socketsIn(t, dir)) == 0 {
			t.Fatal("no qemu-nbd socket after the snapshot")
		}
		for _, s := range []platform.Snapshot{{ID: "never-made", VM: "vm"}, {ID: "planned", VM: "vm"}, {ID: "planned", VM: "vm"}, {ID: "x", VM: "no-such-vm"}} {
			if err := p.DeleteSnapshot(ctx, s); err != nil {
				t.Errorf("DeleteSnapshot %+v: %v", s, err)
			}
		}
		if left := socketsIn(t, dir); len(left) > 0 {
			t.Errorf("qemu-nbd sockets left: %v", left)
		}
		runTool(t, "qemu-io", "-f", "qcow2", "-c", "write 0 4k", dir+"/os.qcow2") // nothing holds the lock
	})
}
