package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) vmCmd() *cobra.Command {
	return group("vm", "List the VMs of a host", a.vmListCmd())
}

func (a *app) vmListCmd() *cobra.Command {
	var host string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a host's VMs and their disks",
		Long: `List the VMs of a host, asked through the host's worker (task queue
vmvault-host-NAME), with their disks and the size to protect (temp disks
excluded). VMs the platform cannot read are reported as warnings on stderr.`,
		Example: `  vmvault vm list
  vmvault vm list --host hv02
  vmvault vm list --json | jq -r '.[].name'`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("host") {
				host = a.cfg.Host
			}
			return a.vmList(ctx, host)
		}),
	}
	cmd.Flags().StringVar(&host, "host", "", "host whose VMs to list (default $VMVAULT_HOST, local)")
	return a.jsonFlag(cmd)
}

// listVMs asks the host's inventory for its VMs. An inventory that is just
// ending (idle) refuses the update; a second try starts a new one.
func (a *app) listVMs(ctx context.Context, c client.Client, host string) (activities.VMList, error) {
	opts := workflows.InventoryStartOptions(a.cfg.TaskQueue, host)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var list activities.VMList
	for attempt := 1; ; attempt++ {
		h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
			StartWorkflowOperation: c.NewWithStartWorkflowOperation(opts, workflows.Inventory, workflows.InventoryInput{Host: host}),
			UpdateOptions: client.UpdateWorkflowOptions{
				WorkflowID: opts.ID, UpdateName: workflows.UpdateListVMs, WaitForStage: client.WorkflowUpdateStageCompleted,
			},
		})
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) && attempt < 3 {
			continue
		}
		if err != nil {
			return list, fmt.Errorf("list vms of host %s: %w", host, err)
		}
		if err := h.Get(ctx, &list); err != nil {
			return list, jobError{what: "list vms of host " + host, err: err}
		}
		return list, nil
	}
}

func (a *app) vmList(ctx context.Context, host string) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	// An update-with-start on the host's long-lived inventory: a listing is
	// a read, not a job of its own.
	list, err := a.listVMs(ctx, c, host)
	if err != nil {
		return err
	}
	for _, p := range list.Problems {
		fmt.Fprintln(a.errOut, "warning:", p)
	}
	if a.json {
		return a.printJSON(list.VMs)
	}
	tw := a.table("NAME\tOS\tCPU\tMEMORY\tPOWER\tDISKS\tSIZE")
	for _, vm := range list.VMs {
		var total int64
		var disks []string
		for _, d := range vm.Disks {
			disks = append(disks, fmt.Sprintf("%s:%s", d.Name, size(d.SizeBytes)))
			if d.Role != platform.DiskTemp {
				total += d.SizeBytes
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d MiB\t%s\t%s\t%s\n", vm.Name, vm.OS, vm.CPUs, vm.MemoryMB, vm.Power, strings.Join(disks, " "), size(total))
	}
	return tw.Flush()
}
