package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vmvault/vmvault/activities"
)

// UpdateListVMs is the update a host's inventory answers with the host's VMs.
const UpdateListVMs = "list-vms"

// InventoryInput names the host an inventory serves.
type InventoryInput struct {
	Host string `json:"host"`
	// Idle ends the inventory after this long without a request; default 1h.
	Idle time.Duration `json:"idle,omitempty"`
}

// inventoryRuns is how many requests one run serves before it continues as
// new, so its history stays short.
const inventoryRuns = 200

// Inventory is a host's VM directory: one long-lived workflow per host
// (InventoryWorkflowID) that answers the list-vms update by asking the host.
// 'vm list' sends the update with update-with-start, so a listing is a read,
// not a job: it leaves one inventory per host in the Temporal UI, not one
// workflow per call.
func Inventory(ctx workflow.Context, in InventoryInput) error {
	if in.Idle <= 0 {
		in.Idle = time.Hour
	}
	served := 0
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue: activities.HostQueue(in.Host), ScheduleToStartTimeout: 30 * time.Second, StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2},
	})
	if err := workflow.SetUpdateHandler(ctx, UpdateListVMs, func(ctx workflow.Context) (activities.VMList, error) {
		served++
		var vms activities.VMList
		err := workflow.ExecuteActivity(actx, hostAct.ListVMs).Get(ctx, &vms)
		return vms, err
	}); err != nil {
		return err
	}
	for served < inventoryRuns {
		seen := served
		if ok, err := workflow.AwaitWithTimeout(ctx, in.Idle, func() bool { return served != seen }); err != nil || !ok {
			break
		}
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	if served >= inventoryRuns {
		return workflow.NewContinueAsNewError(ctx, Inventory, in)
	}
	return nil
}
