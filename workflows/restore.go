package workflows

import (
	"fmt"
	"path"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// Restore modes.
const (
	RestoreNewVM   = "new-vm"
	RestoreReplace = "replace"
	RestoreDisks   = "disks"
)

// RestoreVMInput asks to restore a recovery point.
type RestoreVMInput struct {
	// RecoveryPoint is "<vm>/<id>" or an id.
	RecoveryPoint string `json:"recovery_point"`
	Mode          string `json:"mode"`
	// TargetVM is the VM to create (new-vm) or whose disks to replace
	// (replace; default the recovery point's own VM).
	TargetVM string `json:"target_vm,omitempty"`
	// TargetDir receives the disk images (disks).
	TargetDir string `json:"target_dir,omitempty"`
	// Host is where the target lives.
	Host  string `json:"host"`
	Vault string `json:"vault"`
	// HeartbeatTimeout of disk restores; default 2 minutes.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
}

// RestoreVMResult says what was restored where.
type RestoreVMResult struct {
	RecoveryPoint string                         `json:"recovery_point"`
	Mode          string                         `json:"mode"`
	VM            string                         `json:"vm,omitempty"`
	Disks         []activities.RestoreDiskResult `json:"disks"`
}

// RestoreVM restores a recovery point to a new VM, over the disks of an
// existing stopped VM, or as disk images in a directory. Disks are restored
// in parallel and every block is verified against its id.
func RestoreVM(ctx workflow.Context, in RestoreVMInput) (res RestoreVMResult, err error) {
	if in.HeartbeatTimeout <= 0 {
		in.HeartbeatTimeout = 2 * time.Minute
	}
	prog := &Progress{Kind: KindRestore, Phase: PhaseValidating, StartedAt: workflow.Now(ctx)}
	if err := trackProgress(ctx, prog); err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			prog.Phase, prog.Error = PhaseFailed, err.Error()
		}
	}()
	bad := func(format string, a ...any) error {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, a...), activities.ErrTypeBadRequest, nil)
	}
	switch in.Mode {
	case RestoreNewVM:
		if in.TargetVM == "" || in.TargetDir != "" {
			return res, bad("restore new-vm: needs a new vm name and no directory")
		}
	case RestoreReplace:
		if in.TargetDir != "" {
			return res, bad("restore replace: takes no directory")
		}
	case RestoreDisks:
		if in.TargetDir == "" || in.TargetVM != "" || !path.IsAbs(in.TargetDir) {
			return res, bad("restore disks: needs an absolute target directory and no vm")
		}
	default:
		return res, bad("restore: unknown mode %q (want %s, %s or %s)", in.Mode, RestoreNewVM, RestoreReplace, RestoreDisks)
	}
	if in.Host == "" || in.RecoveryPoint == "" {
		return res, bad("restore: recovery point and host are required")
	}
	res.Mode = in.Mode
	var h *activities.Host
	var va *activities.Vault
	hostCtx := hostOptions(ctx, in.Host)

	var info activities.RecoveryPointInfo
	if err := workflow.ExecuteActivity(centralOptions(ctx), va.LoadRecoveryPoint, activities.LoadRecoveryPointInput{Ref: in.RecoveryPoint}).Get(ctx, &info); err != nil {
		return res, err
	}
	rp := info.RecoveryPoint
	res.RecoveryPoint = rp.Ref()
	prog.VM = rp.VM
	prog.RecoveryPoint = rp.Ref()
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVM.ValueSet(rp.VM), AttrVault.ValueSet(in.Vault), AttrKind.ValueSet(KindRestore),
		AttrRecoveryPoint.ValueSet(rp.Ref()), AttrConsistency.ValueSet(rp.Consistency), AttrBackupType.ValueSet(string(rp.Type)))

	// Every disk the VM had: backed-up disks from the recovery point, the
	// temp disk (never backed up) comes back empty.
	disks := append([]vault.DiskRecord(nil), rp.Disks...)
	for _, d := range info.VM.Disks {
		if d.Role == platform.DiskTemp {
			disks = append(disks, vault.DiskRecord{Name: d.Name, Role: string(d.Role), SizeBytes: d.SizeBytes})
		}
	}
	for _, d := range disks {
		ds := prog.disk(d.Name)
		ds.SizeBytes = d.SizeBytes
	}

	switch in.Mode {
	case RestoreNewVM:
		prog.Phase = PhaseCreateVM
		spec := info.VM
		spec.Name, spec.Power, spec.Extension = in.TargetVM, platform.PowerStopped, platform.ExtensionStatus{}
		for i := range spec.Disks {
			spec.Disks[i].File, spec.Disks[i].Format = "", "" // the target platform chooses
		}
		var created platform.VM
		if err := workflow.ExecuteActivity(hostCtx, h.CreateVM, activities.CreateVMInput{VM: spec}).Get(ctx, &created); err != nil {
			return res, err
		}
		res.VM = created.Name
	case RestoreReplace:
		if in.TargetVM == "" {
			in.TargetVM = rp.VM // the VM the recovery point came from
		}
		var target platform.VM
		if err := workflow.ExecuteActivity(hostCtx, h.DescribeVM, activities.VMInput{VM: in.TargetVM}).Get(ctx, &target); err != nil {
			return res, err
		}
		if target.Power != platform.PowerStopped {
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("restore replace: vm %s is %s: stop it first", in.TargetVM, target.Power), activities.ErrTypeVMRunning, nil)
		}
		for _, d := range disks {
			if !hasDisk(target, d.Name) {
				return res, bad("restore replace: vm %s has no disk %s (recovery point %s)", in.TargetVM, d.Name, rp.Ref())
			}
		}
		res.VM = in.TargetVM
	}

	prog.Phase = PhaseRestoreDisks
	dctx := diskOptions(ctx, in.Host, in.HeartbeatTimeout, 10)
	dctx, cancel := workflow.WithCancel(dctx)
	defer cancel()
	results := make([]activities.RestoreDiskResult, len(disks))
	var firstErr error
	sel := workflow.NewSelector(ctx)
	for i, d := range disks {
		ri := activities.RestoreDiskInput{RecoveryPoint: rp.Ref(), Disk: d}
		if in.Mode == RestoreDisks {
			ri.TargetDir, ri.FileName = in.TargetDir, d.Name+".raw"
		} else {
			ri.TargetVM = res.VM
		}
		prog.disk(d.Name).State = "running"
		sel.AddFuture(workflow.ExecuteActivity(dctx, h.RestoreDisk, ri), func(f workflow.Future) {
			ds := prog.disk(d.Name)
			if err := f.Get(ctx, &results[i]); err != nil {
				ds.State = "failed"
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			ds.State, ds.DoneBytes = "done", d.SizeBytes
		})
	}
	for range disks {
		sel.Select(ctx)
	}
	if firstErr != nil {
		return res, firstErr
	}
	res.Disks = results
	prog.Phase = PhaseDone
	return res, nil
}

func hasDisk(vm platform.VM, name string) bool {
	for _, d := range vm.Disks {
		if d.Name == name {
			return true
		}
	}
	return false
}

// ListVMsInput names the host whose VMs to list.
type ListVMsInput struct {
	Host string `json:"host"`
}

// ListVMs lists the VMs of a host (the CLI's vm list).
func ListVMs(ctx workflow.Context, in ListVMsInput) (activities.VMList, error) {
	var h *activities.Host
	var vms activities.VMList
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue: activities.HostQueue(in.Host), ScheduleToStartTimeout: 30 * time.Second, StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2},
	})
	err := workflow.ExecuteActivity(ctx, h.ListVMs).Get(ctx, &vms)
	return vms, err
}
