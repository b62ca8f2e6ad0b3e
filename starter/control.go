package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// Protection, policy and schedule changes run as workflows on the worker
// (workflows.Protect, Unprotect, UpdatePolicy, SyncSchedule): the commands
// validate, start one, wait for it and print its result.

// maxWaits bounds how often a change waits for another of the same VM,
// policy or schedule before it gives up.
const maxWaits = 20

// runChange starts the workflow wf(in) with opts and waits for its result
// in out. A change with the same id already running (another protect of
// the VM, update of the policy) is waited for, then this one starts:
// changes of one thing run one after the other. started, if set, is told
// the run once it started.
func (a *app) runChange(ctx context.Context, opts client.StartWorkflowOptions, wf, in, out any, started func(client.WorkflowRun)) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	for waits := 0; ; waits++ {
		run, err := c.ExecuteWorkflow(ctx, opts, wf, in)
		var running *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &running) && waits < maxWaits {
			fmt.Fprintf(a.errOut, "waiting for job %s (run %s), which changes the same thing now\n", opts.ID, running.RunId)
			_ = c.GetWorkflow(ctx, opts.ID, running.RunId).Get(ctx, nil)
			continue
		}
		if err != nil {
			return fmt.Errorf("start job %s: %w", opts.ID, err)
		}
		if started != nil {
			started(run)
		}
		stop := a.hintWithoutWorker(ctx, c, opts.TaskQueue)
		err = waitRun(ctx, run, out)
		stop()
		return changeError(err)
	}
}

// hintWithoutWorker says, once, when a change is still waiting after a
// few seconds and no worker polls its task queue: the change runs when
// one starts. The returned func stops the check.
func (a *app) hintWithoutWorker(ctx context.Context, c client.Client, queue string) func() {
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Second):
		}
		d, err := c.DescribeTaskQueue(ctx, queue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		if err == nil && len(d.GetPollers()) == 0 {
			fmt.Fprintf(a.errOut, "waiting for a worker: none polls task queue %s (start vmvault-worker); the change runs when one does\n", queue)
		}
	}()
	return func() { close(stop); <-stopped }
}

// waitRun waits for the run's result; a busy server failing the wait
// itself (not the job) is waited through again.
func waitRun(ctx context.Context, run client.WorkflowRun, out any) error {
	for tries := 1; ; tries++ {
		err := run.Get(ctx, out)
		if err == nil || tries == 10 || ctx.Err() != nil || !transient(err) {
			return err
		}
		time.Sleep(time.Duration(tries) * time.Second)
	}
}

// transient: the server was briefly unable to answer.
func transient(err error) bool {
	var unavailable *serviceerror.Unavailable
	var deadline *serviceerror.DeadlineExceeded
	var exhausted *serviceerror.ResourceExhausted
	return errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &exhausted) || errors.Is(err, context.DeadlineExceeded)
}

// changeError turns a change's failure back into the one-line error the
// command printed when it made the change itself: the message of the
// outermost application error, without its type. Other failures (timed
// out, terminated) stay as they are.
func changeError(err error) error {
	var app *temporal.ApplicationError
	if err == nil || !errors.As(err, &app) {
		return err
	}
	return errors.New(app.Message())
}

// whoAsked is the OS user running the command, recorded in the workflow's
// input so the Temporal UI shows who asked for a change.
func whoAsked() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
