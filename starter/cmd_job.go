package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/workflows"
)

func (a *app) jobCmd() *cobra.Command {
	return group("job", "List backup and restore jobs, or show one", a.jobListCmd(), a.jobShowCmd())
}

func (a *app) jobListCmd() *cobra.Command {
	var vm, kind string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List backup and restore jobs, newest first",
		Long: `List backup and restore jobs from Temporal visibility, newest first, with
their status, duration and the recovery point they made or read.`,
		Example: `  vmvault job list
  vmvault job list --vm web01 --kind backup --limit 10

  # failed jobs, for a monitoring script
  vmvault job list --json | jq '.[] | select(.status == "failed")'`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, _ []string) error {
			q := []string{"VmvaultKind IS NOT NULL"}
			if vm != "" {
				q = append(q, fmt.Sprintf("VmvaultVM = %q", vm))
			}
			if kind != "" {
				if k := workflows.Kind(kind); k != workflows.KindBackup && k != workflows.KindRestore && k != workflows.KindReplicate {
					return usagef(cmd, "--kind: want backup, restore or replicate")
				}
				q = append(q, fmt.Sprintf("VmvaultKind = %q", kind))
			}
			return a.jobList(ctx, strings.Join(q, " AND "), limit)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&vm, "vm", "", "only jobs of this VM")
	f.StringVar(&kind, "kind", "", "only backup, restore or replicate jobs")
	f.IntVar(&limit, "limit", 50, "at most this many jobs")
	return a.jsonFlag(cmd)
}

type job struct {
	ID            string               `json:"id"`
	Run           string               `json:"run"`
	Kind          string               `json:"kind"`
	VM            string               `json:"vm"`
	Status        string               `json:"status"`
	Start         time.Time            `json:"start"`
	Close         time.Time            `json:"close,omitempty"`
	BackupType    string               `json:"backup_type,omitempty"`
	Consistency   platform.Consistency `json:"consistency,omitempty"`
	RecoveryPoint string               `json:"recovery_point,omitempty"`
}

func (a *app) jobList(ctx context.Context, query string, limit int) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	jobs, err := listJobs(ctx, c, query, limit)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(jobs)
	}
	tw := a.table("JOB\tKIND\tVM\tSTATUS\tSTARTED\tDURATION\tTYPE\tCONSISTENCY\tRECOVERY POINT")
	for _, j := range jobs {
		dur := "-"
		if !j.Close.IsZero() {
			dur = j.Close.Sub(j.Start).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Kind, dash(j.VM), j.Status, j.Start.UTC().Format(time.RFC3339), dur, dash(j.BackupType), dash(j.Consistency.String()), dash(j.RecoveryPoint))
	}
	return tw.Flush()
}

// listJobs pages through visibility until it has limit jobs or no more.
func listJobs(ctx context.Context, c client.Client, query string, limit int) ([]job, error) {
	var jobs []job
	var token []byte
	for len(jobs) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token, PageSize: int32(min(limit, 100))})
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		for _, e := range resp.Executions {
			jobs = append(jobs, jobOf(e))
		}
		token = resp.NextPageToken
		if len(token) == 0 {
			break
		}
	}
	if len(jobs) > limit {
		jobs = jobs[:limit]
	}
	return jobs, nil
}

func jobOf(e *workflow.WorkflowExecutionInfo) job {
	sa := e.GetSearchAttributes().GetIndexedFields()
	str := func(k string) string {
		if p, ok := sa[k]; ok {
			var s string
			if json.Unmarshal(p.GetData(), &s) == nil {
				return s
			}
		}
		return ""
	}
	j := job{ID: e.Execution.WorkflowId, Run: e.Execution.RunId, Kind: str("VmvaultKind"), VM: str("VmvaultVM"),
		Status: strings.ToLower(strings.TrimPrefix(e.Status.String(), "WORKFLOW_EXECUTION_STATUS_")), Start: e.StartTime.AsTime(),
		BackupType: str("VmvaultBackupType"), Consistency: platform.Consistency(str(workflows.AttrConsistency.GetName())), RecoveryPoint: str("VmvaultRecoveryPoint")}
	if e.CloseTime != nil {
		j.Close = e.CloseTime.AsTime()
	}
	return j
}

func (a *app) jobShowCmd() *cobra.Command {
	var runID string
	cmd := &cobra.Command{
		Use:   "show JOB",
		Short: "Show one job: status, phase, and each disk's progress",
		Long: `Show one job from Temporal and its typed progress query: phase, recovery point,
and per disk the bytes scanned, changed, uploaded and stored. Works while the
job runs and after it ended.`,
		Example: `  vmvault job show backup-web01
  vmvault job show restore-web01-restored-20261121T233345Z --json

  # an earlier run of the same job id (ids come from 'vmvault job list')
  vmvault job show backup-web01 --run 01a20075-6b72-71d0-8353-af83289999b5`,
		Args: oneArg("one job id"),
		RunE: a.run(func(ctx context.Context, _ *cobra.Command, args []string) error {
			return a.jobShow(ctx, args[0], runID)
		}),
	}
	cmd.Flags().StringVar(&runID, "run", "", "run id (default: the latest run of the job)")
	return a.jsonFlag(cmd)
}

func (a *app) jobShow(ctx context.Context, id, runID string) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	d, err := c.DescribeWorkflowExecution(ctx, id, runID)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("job %s not found in namespace %s", id, a.cfg.Namespace)
	}
	if err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	info := d.WorkflowExecutionInfo
	status := strings.ToLower(strings.TrimPrefix(info.Status.String(), "WORKFLOW_EXECUTION_STATUS_"))
	p, qerr := queryProgress(ctx, c, id, info.Execution.RunId)
	if a.json {
		return a.printJSON(map[string]any{"job": id, "run": info.Execution.RunId, "type": info.Type.Name, "status": status,
			"start": info.StartTime.AsTime(), "progress": p})
	}
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(a.out, "%-15s %s\n", k, v)
		}
	}
	field("job", id)
	field("run", info.Execution.RunId)
	field("workflow", info.Type.Name)
	field("status", status)
	field("started", info.StartTime.AsTime().UTC().Format(time.RFC3339))
	if info.CloseTime != nil {
		field("duration", info.CloseTime.AsTime().Sub(info.StartTime.AsTime()).Round(100*time.Millisecond).String())
	}
	if qerr != nil {
		field("progress", "unavailable: "+qerr.Error())
		return nil
	}
	field("vm", dash(p.VM))
	field("phase", string(p.Phase))
	field("type", p.BackupType)
	field("consistency", p.Consistency.String())
	field("recovery point", p.RecoveryPoint)
	field("error", p.Error)
	fmt.Fprintln(a.out)
	tw := a.table("DISK\tSTATE\tSIZE\tDONE\tSCANNED\tCHANGED\tUPLOADED\tSTORED")
	for _, d := range p.Disks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Disk, d.State, size(d.SizeBytes), size(d.DoneBytes), size(d.ScannedBytes), size(d.ChangedBytes), size(d.UploadedBytes), size(d.StoredBytes))
	}
	tw.Flush()
	for _, n := range p.Notes {
		fmt.Fprintf(a.out, "note: %s\n", n)
	}
	return nil
}
