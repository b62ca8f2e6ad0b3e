package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
)

// QueryProgress is the typed query every job answers with Progress.
const QueryProgress = "progress"

// DiskStatus is one disk's part of a job's progress.
type DiskStatus struct {
	activities.DiskProgress
	State DiskState `json:"state"`
}

// Progress is what the progress query answers.
type Progress struct {
	Kind          Kind                 `json:"kind"`
	VM            string               `json:"vm"`
	Phase         Phase                `json:"phase"`
	Consistency   platform.Consistency `json:"consistency,omitempty"`
	BackupType    string               `json:"backup_type,omitempty"`
	RecoveryPoint string               `json:"recovery_point,omitempty"`
	Disks         []DiskStatus         `json:"disks"`
	Notes         []string             `json:"notes,omitempty"`
	Error         string               `json:"error,omitempty"`
	StartedAt     time.Time            `json:"started_at"`
}

// disk returns the status of the named disk, adding it if new.
func (p *Progress) disk(name string) *DiskStatus {
	for i := range p.Disks {
		if p.Disks[i].Disk == name {
			return &p.Disks[i]
		}
	}
	p.Disks = append(p.Disks, DiskStatus{DiskProgress: activities.DiskProgress{Disk: name}, State: DiskPending})
	return &p.Disks[len(p.Disks)-1]
}

// note adds a line to the job's notes.
func (p *Progress) note(s string) { p.Notes = append(p.Notes, s) }

// newProgress starts tracking a job: it answers the progress query from the
// returned Progress and folds the disk progress signals of activities into
// it. The caller's deferred fail records a failed job's error.
func newProgress(ctx workflow.Context, kind Kind, vm string) (*Progress, error) {
	prog := &Progress{Kind: kind, VM: vm, Phase: PhaseValidating, StartedAt: workflow.Now(ctx)}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return *prog, nil }); err != nil {
		return nil, err
	}
	ch := workflow.GetSignalChannel(ctx, activities.SignalDiskProgress)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var p activities.DiskProgress
			if !ch.Receive(ctx, &p) {
				return
			}
			ds := prog.disk(p.Disk)
			if ds.State.Finished() {
				continue
			}
			ds.DiskProgress = p
			ds.State = DiskRunning
		}
	})
	return prog, nil
}

// fail records a failed job in its progress; call it deferred with the
// job's named error.
func (p *Progress) fail(err error) {
	if err != nil {
		p.Phase, p.Error = PhaseFailed, err.Error()
	}
}
