package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
)

// Every activity call states its timeouts and retry policy here.

// hostOptions: short platform calls on the VM's host. They heartbeat
// (activities.alive), so one whose worker died is retried after
// stepHeartbeat, not after its StartToClose: a killed host agent stalls a
// job, or a snapshot's deletion, for well under a minute.
func hostOptions(ctx workflow.Context, host string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              activities.HostQueue(host),
		ScheduleToStartTimeout: 10 * time.Minute, // no worker for that host: fail, don't hang for a day
		StartToCloseTimeout:    5 * time.Minute,
		HeartbeatTimeout:       stepHeartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 5,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// snapshotOptions: taking a snapshot may run the guest's pre- and
// post-scripts (each bounded in the guest, all of them by the platform),
// so it gets longer than other host calls.
func snapshotOptions(ctx workflow.Context, host string) workflow.Context {
	ctx = hostOptions(ctx, host)
	opts := workflow.GetActivityOptions(ctx)
	opts.StartToCloseTimeout = 15 * time.Minute
	return workflow.WithActivityOptions(ctx, opts)
}

// diskOptions: long disk transfers and restores on the VM's host,
// heartbeating, retried (and resumed) when a worker dies, and told when the
// job is cancelled. From version transfer-queue they run on the host's
// transfer queue, whose slots are their own: before, they shared the host
// queue's slots with the short steps, which then queued behind multi-hour
// transfers until they timed out (a snapshot's deletion among them).
func diskOptions(ctx workflow.Context, host string, heartbeat time.Duration, attempts int32) workflow.Context {
	queue := activities.HostQueue(host)
	if workflow.GetVersion(ctx, "transfer-queue", workflow.DefaultVersion, 1) == 1 {
		queue = activities.TransferQueue(host)
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: attempts,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// centralOptions: vault work on the workflow's own queue.
func centralOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second, MaximumAttempts: 10,
			NonRetryableErrorTypes: activities.NonRetryable,
		},
	})
}

// quickOptions: a central step that is one or two calls to Temporal or the
// vault (asking for replication, writing a protection record). Its limit
// is a minute, not centralOptions' ten: a task the server handed to a
// poller whose call had already given up (a loaded server) is lost, and
// only this timeout brings it back; with ten minutes one lost task held a
// backup that long after its point was saved (TestLoadScheduledBurst).
func quickOptions(ctx workflow.Context) workflow.Context {
	ctx = centralOptions(ctx)
	opts := workflow.GetActivityOptions(ctx)
	opts.StartToCloseTimeout = time.Minute
	return workflow.WithActivityOptions(ctx, opts)
}

// stepHeartbeat bounds how long a short step (PrepareBackup,
// SaveRecoveryPoint, LoadRecoveryPoint, every host step) may go without a
// heartbeat: one whose worker died is retried after this, not after its
// StartToClose.
const stepHeartbeat = 30 * time.Second

// heartbeating: the step heartbeats (activities.alive), so it is retried
// soon after its worker dies and hears of a cancel, which the workflow
// waits for it to take (what it made is cleaned up after it ended).
func heartbeating(ctx workflow.Context) workflow.Context {
	opts := workflow.GetActivityOptions(ctx)
	opts.HeartbeatTimeout = stepHeartbeat
	opts.WaitForCancellation = true
	return workflow.WithActivityOptions(ctx, opts)
}

// vaultStepOptions: a short vault step of a backup or restore. It
// heartbeats while it runs (a full index load may take minutes on a big
// vault), so a dead worker costs the job about HeartbeatTimeout, not the
// ten minutes of StartToClose.
func vaultStepOptions(ctx workflow.Context) workflow.Context {
	ctx = centralOptions(ctx)
	opts := workflow.GetActivityOptions(ctx)
	opts.HeartbeatTimeout = stepHeartbeat
	return workflow.WithActivityOptions(ctx, opts)
}

// withSummary labels the next activity calls in the Temporal UI.
func withSummary(ctx workflow.Context, summary string) workflow.Context {
	opts := workflow.GetActivityOptions(ctx)
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}
