package workflows

import "go.temporal.io/sdk/workflow"

// eachDisk starts one activity per disk, in parallel, and waits for all of
// them. done sees each finished future (in completion order); the first
// error it returns cancels the disks still running, and is returned once
// every disk has stopped.
func eachDisk(ctx workflow.Context, disks []string, start func(ctx workflow.Context, disk string) workflow.Future, done func(i int, f workflow.Future) error) error {
	runCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	var first error
	sel := workflow.NewSelector(ctx)
	for i, d := range disks {
		sel.AddFuture(start(runCtx, d), func(f workflow.Future) {
			if err := done(i, f); err != nil && first == nil {
				first = err
				cancel()
			}
		})
	}
	for range disks {
		sel.Select(ctx)
	}
	return first
}
