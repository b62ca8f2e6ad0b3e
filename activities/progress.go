package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/vmvault/vmvault/infra/vault"
)

// Signaler delivers progress to a running workflow (client.Client is one).
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// SignalDiskProgress is the signal a disk transfer or restore sends its workflow.
const SignalDiskProgress = "disk-progress"

// DiskProgress is what a disk transfer or restore reports: in heartbeats, in
// signals to the workflow, and so in the workflow's progress query.
type DiskProgress struct {
	Disk          string  `json:"disk"`
	SizeBytes     int64   `json:"size_bytes"`
	DoneBytes     int64   `json:"done_bytes"`
	ScannedBytes  int64   `json:"scanned_bytes"`
	ChangedBytes  int64   `json:"changed_bytes"`
	UploadedBytes int64   `json:"uploaded_bytes"`
	StoredBytes   int64   `json:"stored_bytes"`
	BytesPerS     float64 `json:"bytes_per_s"`
	Attempt       int32   `json:"attempt"`
}

func diskProgress(p vault.Progress, attempt int32) DiskProgress {
	return DiskProgress{Disk: p.Disk, SizeBytes: p.SizeBytes, DoneBytes: p.DoneBytes,
		ScannedBytes: p.Stats.ScannedBytes, ChangedBytes: p.Stats.ChangedBytes,
		UploadedBytes: p.Stats.NewBytes, StoredBytes: p.Stats.StoredBytes, BytesPerS: p.BytesPerS, Attempt: attempt}
}

// reporter heartbeats a long activity's progress on every update (the SDK
// throttles what it sends) and signals it to the workflow now and then, less
// often as the activity ages, so a long job keeps a short history.
type reporter struct {
	ctx        context.Context
	h          *HostActivities
	info       activity.Info
	mu         sync.Mutex
	details    any
	began      time.Time
	lastSignal time.Time
}

func (h *HostActivities) newReporter(ctx context.Context) *reporter {
	return &reporter{ctx: ctx, h: h, info: activity.GetInfo(ctx), began: time.Now()}
}

// report records heartbeat details and signals p when due (or when force).
func (r *reporter) report(details any, p DiskProgress, force bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.details = details
	activity.RecordHeartbeat(r.ctx, details)
	if r.h.Signaler == nil || !force && time.Since(r.lastSignal) < r.signalEvery() {
		return
	}
	r.lastSignal = time.Now()
	// Best effort: progress is informative, a lost signal is harmless.
	_ = r.h.Signaler.SignalWorkflow(r.ctx, r.info.WorkflowExecution.ID, r.info.WorkflowExecution.RunID, SignalDiskProgress, p)
}

func (r *reporter) signalEvery() time.Duration {
	every := r.h.ProgressEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	return max(every, time.Since(r.began)/30)
}

// keepAlive heartbeats the last details (initially initial) every few
// seconds (at least three times per heartbeat timeout), so a live activity waiting on slow storage is not retried, and a
// resumed one keeps its checkpoint; call the result to stop.
func (r *reporter) keepAlive(initial any) (stop func()) {
	r.mu.Lock()
	r.details = initial
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(beatEvery(r.ctx, 5*time.Second))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.mu.Lock()
				activity.RecordHeartbeat(r.ctx, r.details)
				r.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}
