package activities

import (
	"context"
	"fmt"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage"
)

// ErrTypeNoSecondary: the worker has no secondary vault configured.
const ErrTypeNoSecondary = "NoSecondary"

// Secondary is the vault's secondary location (VMVAULT_SECONDARY_VAULT) on
// a worker: replication writes its storage; restores and checks read the
// vault copy there, opened with the primary's unlocked keys.
type Secondary struct {
	Storage storage.Backend
	// DeleteAfter is how long an object gone from the primary stays on the
	// secondary (the soft-delete period).
	DeleteAfter time.Duration
	// Limit caps the copy rate, bytes/s (0: no cap).
	Limit int64
	mu    sync.Mutex
	v     *vault.Vault
}

// vault opens (once) the copy of primary on the secondary.
func (s *Secondary) vault(ctx context.Context, primary *vault.Vault) (*vault.Vault, error) {
	if s == nil || s.Storage == nil {
		return nil, nonRetryable("this worker has no secondary vault (set VMVAULT_SECONDARY_VAULT)", ErrTypeNoSecondary)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v == nil {
		v, err := primary.OnStorage(ctx, s.Storage)
		if err != nil {
			return nil, classify(err)
		}
		s.v = v
	}
	return s.v, nil
}

// pinned returns the vault a pin names: the primary, or its copy on the
// secondary (same id) for a job that reads the secondary.
func pinned(ctx context.Context, primary *vault.Vault, sec *Secondary, pin VaultPin) (*vault.Vault, error) {
	if err := checkPin(primary, pin); err != nil {
		return nil, err
	}
	if !pin.Secondary {
		return primary, nil
	}
	return sec.vault(ctx, primary)
}

// ReplicateInput asks for one replication of the vault to its secondary.
type ReplicateInput struct {
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Workers copy objects in parallel (0: 4).
	Workers int `json:"workers,omitempty"`
}

// ReplicateResult is what a replication did, over all its attempts.
type ReplicateResult struct {
	vault.ReplicateReport
	Vault VaultPin `json:"vault"`
	// Attempts the activity took; CopiedBefore counts what earlier attempts
	// copied (Copied is this attempt's).
	Attempts     int32 `json:"attempts"`
	CopiedBefore int   `json:"copied_before,omitempty"`
	BytesBefore  int64 `json:"bytes_before,omitempty"`
}

// replicateHeartbeat is a replication's progress, kept across attempts.
type replicateHeartbeat struct {
	vault.ReplicateProgress
	CopiedBefore int   `json:"copied_before"`
	BytesBefore  int64 `json:"bytes_before"`
}

// ReplicateVault copies what the secondary lacks, config first and
// manifests last (vault.Replicate). A retried attempt lists the secondary
// again and skips what is there, so nothing is copied twice; the
// heartbeat carries the progress of earlier attempts.
func (a *VaultActivities) ReplicateVault(ctx context.Context, in ReplicateInput) (ReplicateResult, error) {
	res := ReplicateResult{Vault: pinOf(a.Vault), Attempts: activity.GetInfo(ctx).Attempt}
	sec := a.Secondary
	if sec == nil || sec.Storage == nil {
		return res, nonRetryable("replicate: this worker has no secondary vault (set VMVAULT_SECONDARY_VAULT)", ErrTypeNoSecondary)
	}
	var prior replicateHeartbeat
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &prior)
	}
	hb := replicateHeartbeat{CopiedBefore: prior.CopiedBefore + prior.Copied, BytesBefore: prior.BytesBefore + prior.CopiedBytes}
	var mu sync.Mutex
	beat := func() {
		mu.Lock()
		defer mu.Unlock()
		activity.RecordHeartbeat(ctx, hb)
	}
	stop := make(chan struct{})
	defer close(stop)
	go a.reportReplication(ctx, &mu, &hb, stop) // listing large vaults reports nothing for a while
	beat()
	if p, ok := sec.Storage.(storage.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			return res, fmt.Errorf("secondary %s: %w", sec.Storage.Location(), err)
		}
	}
	if err := a.Vault.ReloadConfig(ctx); err != nil { // immutability set since the worker started
		return res, classify(err)
	}
	deleteAfter := sec.DeleteAfter
	if im := a.Vault.Config().Immutable; im != nil && deleteAfter > 0 {
		// An immutable vault's secondary keeps what vanished from the
		// primary at least as long as the vault keeps its points: a primary
		// emptied behind the vault's back does not empty the secondary.
		deleteAfter = max(deleteAfter, time.Duration(im.Days)*24*time.Hour)
	}
	// The keys let the pass authenticate the config it copies (read once,
	// there), verify what it copies and both sides of a conflict, and read
	// GC's deletion log: the only deletions of data it replicates.
	opt := vault.ReplicateOptions{DeleteAfter: deleteAfter, Workers: in.Workers, Limit: sec.Limit,
		Keys: a.Vault.Repo().Keys(), Retention: a.secondaryRetention(ctx, sec.Storage),
		Progress: func(p vault.ReplicateProgress) {
			mu.Lock()
			hb.ReplicateProgress = p
			mu.Unlock()
			beat()
		}}
	rep, err := vault.Replicate(ctx, a.Vault.Storage(), sec.Storage, opt)
	res.ReplicateReport, res.CopiedBefore, res.BytesBefore = rep, hb.CopiedBefore, hb.BytesBefore
	if err != nil {
		return res, classify(err)
	}
	activity.GetLogger(ctx).Info("replicated", "secondary", rep.Target, "copied", rep.Copied, "bytes", rep.CopiedBytes,
		"seconds", rep.Duration, "deleted", rep.Deleted, "pending_deletes", rep.PendingDeletes,
		"conflicts", rep.ConflictCount, "refused", rep.RefusedCount, "lost_on_primary", rep.LostOnPrimary)
	for _, c := range rep.Conflicts {
		activity.GetLogger(ctx).Warn("replication conflict: the secondary's copy is kept", "conflict", c.String())
	}
	faultpoint.Hit("replicate.done")
	return res, nil
}

// secondaryRetention locks the copies of an object-locked vault's packs,
// index objects and manifests when the secondary bucket can lock objects.
func (a *VaultActivities) secondaryRetention(ctx context.Context, dst storage.Backend) func(string) *storage.Retention {
	im := a.Vault.Config().Immutable
	r, ok := dst.(storage.Retainer)
	if im == nil || im.ObjectLock == "" || !ok {
		return nil
	}
	if err := r.CheckRetention(ctx); err != nil {
		activity.GetLogger(ctx).Warn("secondary cannot lock objects; copies are not locked", "error", err)
		return nil
	}
	return func(key string) *storage.Retention {
		if !vault.Lockable(key) {
			return nil
		}
		return &storage.Retention{Mode: im.ObjectLock, Until: time.Now().Add(time.Duration(im.Days) * 24 * time.Hour)}
	}
}

// WorkflowStarter starts a workflow or signals the running one (a
// client.Client is one).
type WorkflowStarter interface {
	SignalWithStartWorkflow(ctx context.Context, workflowID, signalName string, signalArg any,
		options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error)
}

// StartReplicationInput names the vault's replication job and why it runs.
type StartReplicationInput struct {
	WorkflowID string `json:"workflow_id"`
	Workflow   string `json:"workflow"`
	Signal     string `json:"signal"`
	Summary    string `json:"summary"`
	// Trigger says what asked for it (a recovery point), for the job's log.
	Trigger string `json:"trigger"`
	// Input is the workflow's input when it is started.
	Input any `json:"input,omitempty"`
}

// StartReplicationResult says whether a replication was asked for.
type StartReplicationResult struct {
	Started   bool   `json:"started"`
	RunID     string `json:"run_id,omitempty"`
	Secondary string `json:"secondary,omitempty"`
}

// StartReplication starts the vault's replication job, or signals the
// running one to make another pass (signal-with-start: one job per vault,
// and no new recovery point is left behind by a pass that listed before
// it). Without a secondary it does nothing.
func (a *VaultActivities) StartReplication(ctx context.Context, in StartReplicationInput) (StartReplicationResult, error) {
	if a.Secondary == nil || a.Secondary.Storage == nil || a.Starter == nil {
		return StartReplicationResult{}, nil
	}
	opts := client.StartWorkflowOptions{
		ID: in.WorkflowID, TaskQueue: activity.GetInfo(ctx).TaskQueue, StaticSummary: in.Summary,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}
	run, err := a.Starter.SignalWithStartWorkflow(ctx, in.WorkflowID, in.Signal, in.Trigger, opts, in.Workflow, in.Input)
	if err != nil {
		return StartReplicationResult{}, fmt.Errorf("start replication %s: %w", in.WorkflowID, err)
	}
	return StartReplicationResult{Started: true, RunID: run.GetRunID(), Secondary: a.Secondary.Storage.Location()}, nil
}

// ReplicationProgress is the name under which a replication reports its
// progress to its workflow, as a disk transfer does (SignalDiskProgress).
const ReplicationProgress = "secondary"

// reportReplication heartbeats every few seconds and signals the progress
// to the workflow (its progress query, 'job show', 'vault replicate --wait').
func (a *VaultActivities) reportReplication(ctx context.Context, mu *sync.Mutex, hb *replicateHeartbeat, stop <-chan struct{}) {
	info := activity.GetInfo(ctx)
	sig, _ := a.Starter.(Signaler)
	began := time.Now()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
		mu.Lock()
		activity.RecordHeartbeat(ctx, *hb)
		p := DiskProgress{Disk: ReplicationProgress, SizeBytes: hb.ToCopyBytes, DoneBytes: hb.CopiedBytes, UploadedBytes: hb.CopiedBytes,
			BytesPerS: float64(hb.CopiedBytes) / time.Since(began).Seconds(), Attempt: info.Attempt}
		mu.Unlock()
		if sig != nil { // best effort, like disk progress
			_ = sig.SignalWorkflow(ctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, SignalDiskProgress, p)
		}
	}
}

// HealSecondary reads and verifies every immutable object of the
// vault's copy on the secondary and replaces each damaged one with the
// primary's copy, once that copy is verified intact (vault.HealSecondary);
// it heartbeats its progress, and a retried attempt resumes after the
// last object its predecessor settled (vault.HealProgress.Done), keeping
// what that one found.
func (a *VaultActivities) HealSecondary(ctx context.Context, in RepairVaultInput) (vault.HealReport, error) {
	sec := a.Secondary
	if sec == nil || sec.Storage == nil {
		return vault.HealReport{}, nonRetryable("repair --secondary: this worker has no secondary vault (set VMVAULT_SECONDARY_VAULT)", ErrTypeNoSecondary)
	}
	if err := a.Vault.ReloadConfig(ctx); err != nil { // immutability set since the worker started
		return vault.HealReport{}, classify(err)
	}
	// Every beat carries the last progress (a beat without it would erase
	// the details a retried attempt resumes from); the keep-alive beats
	// while listing a large vault reports nothing.
	var mu sync.Mutex
	var last vault.HealProgress
	opt := vault.HealOptions{
		Keys: a.Vault.Repo().Keys(), Retention: a.secondaryRetention(ctx, sec.Storage),
		Progress: func(p vault.HealProgress) {
			mu.Lock()
			defer mu.Unlock()
			last = p
			activity.RecordHeartbeat(ctx, last)
		},
	}
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &last); err == nil && last.Done != "" {
			resumed := last
			opt.Resume = &resumed
		}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(beatEvery(ctx, 5*time.Second))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				mu.Lock()
				activity.RecordHeartbeat(ctx, last)
				mu.Unlock()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	rep, err := vault.HealSecondary(ctx, a.Vault.Storage(), sec.Storage, opt)
	if err != nil {
		return rep, classify(err)
	}
	for _, d := range rep.Damaged {
		if d.Replaced {
			activity.GetLogger(ctx).Info("healed the secondary's damaged copy", "object", d.String())
		} else {
			activity.GetLogger(ctx).Warn("the secondary's damaged copy is kept", "object", d.String())
		}
	}
	if rep.Healed > 0 {
		// Readers of the secondary on this worker see the healed index.
		if sv, err := sec.vault(ctx, a.Vault); err == nil {
			if _, err := sv.RefreshIndex(ctx); err != nil {
				return rep, classify(err)
			}
		}
	}
	return rep, nil
}
