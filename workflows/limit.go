package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
)

// DefaultJobLimit is how long a backup or restore may run (the classic
// 24-hour limit).
const DefaultJobLimit = activities.DefaultBackupLimit

// ServerTimeout is the execution timeout to start a job with: its own limit
// plus room for the cleanup the limit triggers. The server's timeout ends a
// workflow without running its cleanup, so it is only the backstop.
func ServerTimeout(limit time.Duration) time.Duration {
	if limit <= 0 {
		limit = DefaultJobLimit
	}
	return limit + time.Hour
}

// jobLimit enforces a job's time limit inside the workflow: when it passes,
// the returned context is cancelled, so the job's deferred cleanup (snapshot
// removal, restore compensation) still runs on its disconnected context.
// expired converts the job's error once the limit has passed; stop ends the
// timer. Jobs recorded before the limit existed replay without it.
func jobLimit(ctx workflow.Context, kind Kind, what string, limit time.Duration) (workflow.Context, func(error) error, func()) {
	if workflow.GetVersion(ctx, "job-limit", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return ctx, func(err error) error { return err }, func() {}
	}
	if limit <= 0 {
		limit = DefaultJobLimit
	}
	jobCtx, cancelJob := workflow.WithCancel(ctx)
	timerCtx, stopTimer := workflow.WithCancel(ctx)
	hit := false
	workflow.Go(timerCtx, func(gctx workflow.Context) {
		if err := workflow.NewTimer(gctx, limit).Get(gctx, nil); err == nil {
			hit = true
			cancelJob()
		}
	})
	expired := func(err error) error {
		if !hit || err == nil {
			return err
		}
		// The job's error is (or wraps) the cancel the limit caused. As the
		// cause of the limit's error it made the SDK close the job as
		// cancelled, and the reason was lost: the CLI and the UI showed
		// "canceled". From this version the cancel is left out.
		cause := err
		var canceled *temporal.CanceledError
		if errors.As(err, &canceled) && workflow.GetVersion(ctx, "job-limit-no-cancel", workflow.DefaultVersion, 1) == 1 {
			cause = nil
		}
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s %s did not finish within its limit of %s; it was stopped and cleaned up", kind, what, limit),
			activities.ErrTypeJobLimit, cause)
	}
	return jobCtx, expired, stopTimer
}
