package qemu

import (
	"context"
	"fmt"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

// Fleecing liveness. The fleecing node reads the disk as it was at the
// snapshot only while its copy-before-write job runs: the job copies each
// block's old contents into the temporary image before the guest
// overwrites it. A job that ended (another QMP client cancelled it, it
// failed, QEMU restarted) stops copying, and from then on the export shows
// the guest's new writes through the temporary image's backing file: a
// read goes on without an error and yields an image that is not
// point-in-time. So every disk read is checked at its end (Verify): the job
// must still run, without an I/O error, and the fleecing node must still be
// there. (A copy that fails inside a running job, such as a full disk under
// the temporary image, fails the guest's write, not the snapshot: QEMU's
// backup job breaks the guest write by default, and its io-status shows it.)

// blockJob is the part of query-block-jobs a liveness check reads.
type blockJob struct {
	Device   string `json:"device"`
	Type     string `json:"type"`
	Status   string `json:"status"`
	IOStatus string `json:"io-status"`
}

// fleeceAlive checks that the fleecing of disk fd of vm still holds the
// snapshot's point in time. A fleecing that stopped wraps
// platform.ErrDiskChanged: a retry on the same snapshot would read the same
// broken image, so the job fails at once (its cleanup runs) and the next
// backup takes a new snapshot. A check that could not be made is an error as
// well, so that the read is not trusted unverified, but a retryable one.
func (p *qemuPlatform) fleeceAlive(ctx context.Context, vm, disk string, fd fleeceDisk) error {
	c, ok, err := p.dialVM(ctx, vm)
	if err != nil {
		return fmt.Errorf("vm %q disk %q: check the fleecing: %w", vm, disk, err)
	}
	if !ok {
		return fmt.Errorf("vm %q disk %q: fleecing stopped: QEMU is not running any more, the read is not point-in-time: %w", vm, disk, platform.ErrDiskChanged)
	}
	defer c.Close()
	if err := checkFleece(ctx, c, fd); err != nil {
		return fmt.Errorf("vm %q disk %q: %w", vm, disk, err)
	}
	return nil
}

func checkFleece(ctx context.Context, c *qmp.Client, fd fleeceDisk) error {
	var jobs []blockJob
	if err := c.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil {
		return fmt.Errorf("check the fleecing: %w", err)
	}
	var job *blockJob
	for i := range jobs {
		if jobs[i].Device == fd.Job {
			job = &jobs[i]
		}
	}
	switch {
	case job == nil:
		return fmt.Errorf("fleecing stopped: copy-before-write job %s is gone (cancelled by another QMP client, or failed), the read is not point-in-time: %w", fd.Job, platform.ErrDiskChanged)
	case job.Status != "running" && job.Status != "ready":
		return fmt.Errorf("fleecing stopped: copy-before-write job %s is %s, the read is not point-in-time: %w", fd.Job, job.Status, platform.ErrDiskChanged)
	case job.IOStatus != "" && job.IOStatus != "ok":
		return fmt.Errorf("fleecing stopped: copy-before-write job %s has io-status %s, the read is not point-in-time: %w", fd.Job, job.IOStatus, platform.ErrDiskChanged)
	}
	nodes, err := queryNodes(ctx, c)
	if err != nil {
		return fmt.Errorf("check the fleecing: %w", err)
	}
	if _, ok := nodes[fd.Fleece]; !ok {
		return fmt.Errorf("fleecing stopped: fleecing node %s is gone, the read is not point-in-time: %w", fd.Fleece, platform.ErrDiskChanged)
	}
	return nil
}
