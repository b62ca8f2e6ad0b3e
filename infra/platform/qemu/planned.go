package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vmvault/vmvault/infra/platform"
)

// deletePlanned removes what CreateSnapshot with snap.ID may have made when
// its token never came back (the job was cancelled, or its worker died,
// while the step ran). Every name a snapshot uses derives from its VM and
// id (fleecePlan, localPlan), so nothing is read from a payload: the
// fleecing nodes, job, exports and temporary files of a running VM, and the
// qemu-nbd of a stopped one (the VM may have started or stopped meanwhile,
// so both). What was never made is skipped; a VM that is gone has nothing
// left.
func (p *qemuPlatform) deletePlanned(ctx context.Context, snap platform.Snapshot) error {
	vm, s, err := p.describe(ctx, snap.VM)
	if errors.Is(err, platform.ErrVMNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	var errs []error
	if err := p.stopLocal(ctx, vm.Name, p.localPlan(vm, snap.ID)); err != nil {
		errs = append(errs, err)
	}
	fl := p.fleecePlan(vm, s, snap.ID)
	c, ok, err := dial(ctx, s)
	switch {
	case err != nil:
		errs = append(errs, err)
	case ok:
		err := p.deleteFleece(ctx, c, fl)
		c.Close()
		if err != nil {
			errs = append(errs, err)
		}
	default: // QEMU is not running: no node, job or export is left
		for _, fd := range fl.Disks {
			if err := os.Remove(fd.Temp); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete snapshot %q of vm %q: %w", snap.ID, snap.VM, err)
	}
	return nil
}
