package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
)

// SignalReplicate asks a running replication for one more pass; its
// argument (a string) says why.
const SignalReplicate = "replicate"

// maxReplicatePasses bounds one run's history; more passes continue as new.
const maxReplicatePasses = 100

// ReplicateVaultInput tunes a vault replication.
type ReplicateVaultInput struct {
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	// Workers copy objects in parallel (0: 4).
	Workers int `json:"workers,omitempty"`
}

// ReplicateVaultResult is the last pass and the totals of all passes.
type ReplicateVaultResult struct {
	Passes      int                        `json:"passes"`
	Copied      int                        `json:"copied"`
	CopiedBytes int64                      `json:"copied_bytes"`
	Last        activities.ReplicateResult `json:"last"`
}

// ReplicateWorkflowID is the one replication job of a vault.
func ReplicateWorkflowID(vaultID string) string { return "replicate-" + vaultID }

// ReplicateStartOptions start the vault's replication, or reuse the
// running one: use them with SignalWithStartWorkflow and SignalReplicate,
// so a request made while a pass runs gets a pass of its own.
func ReplicateStartOptions(taskQueue, vaultID string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: ReplicateWorkflowID(vaultID), TaskQueue: taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(AttrKind.ValueSet(string(KindReplicate))),
		StaticSummary:            replicateSummary,
	}
}

const replicateSummary = "replicate vault to its secondary: packs, index, then recovery points"

// ReplicateVault copies the vault's new objects to its secondary location
// (vault.Replicate), pass after pass while replicate signals arrive (every
// backup sends one), then ends. A pass that fails is retried and resumes:
// what the secondary already holds is skipped.
func ReplicateVault(ctx workflow.Context, in ReplicateVaultInput) (res ReplicateVaultResult, err error) {
	prog, err := newProgress(ctx, KindReplicate, "")
	if err != nil {
		return res, err
	}
	defer func() { prog.fail(err) }()
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet(string(KindReplicate)))
	requests := workflow.GetSignalChannel(ctx, SignalReplicate)
	actx := withSummary(replicateOptions(ctx, in.HeartbeatTimeout), "copy what the secondary lacks")
	for {
		drain(ctx, requests, prog)
		prog.Phase = PhaseReplicating
		ds := prog.disk(activities.ReplicationProgress)
		ds.State, ds.DoneBytes, ds.SizeBytes, ds.UploadedBytes = DiskRunning, 0, 0, 0
		var r activities.ReplicateResult
		if err := workflow.ExecuteActivity(actx, vaultAct.ReplicateVault, activities.ReplicateInput{
			HeartbeatTimeout: in.HeartbeatTimeout, Workers: in.Workers}).Get(ctx, &r); err != nil {
			return res, err
		}
		ds = prog.disk(activities.ReplicationProgress)
		ds.State, ds.SizeBytes, ds.DoneBytes, ds.UploadedBytes = DiskDone, r.CopiedBytes, r.CopiedBytes, r.CopiedBytes
		res.Passes++
		res.Copied += r.Copied + r.CopiedBefore
		res.CopiedBytes += r.CopiedBytes + r.BytesBefore
		res.Last = r
		_ = workflow.UpsertTypedSearchAttributes(ctx, AttrVault.ValueSet(r.Vault.Location))
		summary := fmt.Sprintf("replicated to %s: %d recovery points, %d of %d objects copied (%d bytes) in %.1fs; %d deleted, %d deletes pending the soft-delete period",
			r.Target, r.RecoveryPoints, r.Copied+r.CopiedBefore, r.Objects, r.CopiedBytes+r.BytesBefore, r.Duration, r.Deleted, r.PendingDeletes)
		if r.ConflictCount > 0 || r.RefusedCount > 0 || r.LostOnPrimary > 0 {
			// Only when there is damage, so recorded passes replay as they ran.
			summary += fmt.Sprintf("; damage not spread: %d conflicts (the secondary's copies kept, or replaced where proven damaged), %d objects refused, %d lost on the primary (kept on the secondary)",
				r.ConflictCount, r.RefusedCount, r.LostOnPrimary)
		}
		workflow.SetCurrentDetails(ctx, summary)
		prog.note(summary)
		if requests.Len() == 0 {
			break
		}
		if res.Passes >= maxReplicatePasses {
			return res, workflow.NewContinueAsNewError(ctx, ReplicateVault, in)
		}
	}
	prog.Phase = PhaseDone
	return res, nil
}

// drain takes every pending replicate request: one pass serves them all.
func drain(ctx workflow.Context, ch workflow.ReceiveChannel, prog *Progress) {
	for {
		var why string
		if !ch.ReceiveAsync(&why) {
			return
		}
		if why != "" && len(prog.Notes) < 50 {
			prog.note("requested by " + why)
		}
	}
}

// replicateOptions: a long copy on the central queue, heartbeating; retried
// for about 45 minutes while the secondary is unreachable, after which the
// next backup or 'vmvault vault replicate' catches up.
func replicateOptions(ctx workflow.Context, heartbeat time.Duration) workflow.Context {
	if heartbeat <= 0 {
		heartbeat = 2 * time.Minute
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Minute, MaximumAttempts: 30,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// startReplication asks for the vault's replication after a backup saved
// ref (signal-with-start, see ReplicateStartOptions). A failure is a note:
// the recovery point is saved, and the next backup asks again.
func startReplication(ctx workflow.Context, pin activities.VaultPin, ref string, prog *Progress) (wait func()) {
	if workflow.GetVersion(ctx, "replicate", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	in := activities.StartReplicationInput{
		WorkflowID: ReplicateWorkflowID(pin.ID), Workflow: "ReplicateVault", Signal: SignalReplicate,
		Summary: replicateSummary, Trigger: ref, Input: ReplicateVaultInput{},
	}
	f := workflow.ExecuteActivity(withSummary(quickOptions(ctx), "start replication"), vaultAct.StartReplication, in)
	return func() {
		var r activities.StartReplicationResult
		if err := f.Get(ctx, &r); err != nil {
			prog.note(fmt.Sprintf("warning: replication to the secondary not started (%v): the next backup or 'vmvault vault replicate' catches up", rootMessage(err)))
			return
		}
		if r.Started {
			prog.note(fmt.Sprintf("replication to %s requested (job %s)", r.Secondary, in.WorkflowID))
		}
	}
}
