package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
	"github.com/vmvault/vmvault/workflows"
)

type app struct {
	cfg    config.Config
	out    io.Writer
	json   bool
	client client.Client
}

// flags returns a flag set with the flags every command takes.
func (a *app) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.cfg.TemporalAddress, "address", a.cfg.TemporalAddress, "Temporal frontend host:port")
	fs.StringVar(&a.cfg.Namespace, "namespace", a.cfg.Namespace, "Temporal namespace")
	fs.StringVar(&a.cfg.Vault, "vault", a.cfg.Vault, "vault URL (file:///path or s3://bucket/prefix)")
	fs.StringVar(&a.cfg.TaskQueue, "task-queue", a.cfg.TaskQueue, "central task queue")
	fs.BoolVar(&a.json, "json", false, "print JSON")
	return fs
}

// parse parses flags that may come before or after the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (a *app) dial() (client.Client, error) {
	if a.client == nil {
		c, err := a.cfg.Dial(nil)
		if err != nil {
			return nil, err
		}
		a.client = c
	}
	return a.client, nil
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) table(header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

func (a *app) vaultInit(ctx context.Context, args []string) error {
	fs := a.flags("vault init")
	bs := fs.Int("block-size", vault.DefaultBlockSize, "block size in bytes (power of two, 64 KiB to 8 MiB)")
	ps := fs.Int("pack-size", vault.DefaultPackSize, "target pack size in bytes")
	comp := fs.String("compression", vault.CompressionS2, "block compression: s2 (fast, default), zstd (smaller, ~2x slower) or none")
	le := fs.Int("leaf-blocks", vault.DefaultLeafEntries, "blocks per block-map leaf: the unit of metadata sharing and of resuming an interrupted transfer")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usagef("vault init takes no arguments")
	}
	secret, err := a.cfg.Secret()
	if err != nil {
		return err
	}
	if strings.HasPrefix(a.cfg.Vault, "s3://") {
		if err := s3.EnsureBucket(ctx, a.cfg.S3()); err != nil {
			return err
		}
	}
	be, err := a.cfg.Storage(ctx)
	if err != nil {
		return err
	}
	v, err := vault.Init(ctx, be, secret, vault.InitOptions{BlockSize: *bs, PackSize: *ps, LeafEntries: *le, Compression: *comp})
	if err != nil {
		return err
	}
	c := v.Config()
	if a.json {
		return a.printJSON(map[string]any{"vault": v.Location(), "id": c.ID, "block_size": c.BlockSize, "pack_size": c.PackSize})
	}
	fmt.Fprintf(a.out, "created vault %s at %s (block size %s, pack size %s, AES-256-GCM, %s)\n", c.ID, v.Location(), size(int64(c.BlockSize)), size(int64(c.PackSize)), c.Compression)
	return nil
}

func (a *app) openVault(ctx context.Context) (*vault.Vault, error) {
	return a.cfg.OpenVault(ctx)
}

type vmStats struct {
	VM             string `json:"vm"`
	RecoveryPoints int    `json:"recovery_points"`
	Latest         string `json:"latest"`
	// ProtectedBytes is the protected-instance size: the data on the VM's
	// disks (temp disk excluded) in its latest recovery point.
	ProtectedBytes int64 `json:"protected_bytes"`
	NewBytes       int64 `json:"new_bytes"`
	StoredBytes    int64 `json:"stored_bytes"`
}

func (a *app) vaultStats(ctx context.Context, args []string) error {
	fs := a.flags("vault stats")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usagef("vault stats takes no arguments")
	}
	v, err := a.openVault(ctx)
	if err != nil {
		return err
	}
	rps, err := v.ListRecoveryPoints(ctx, "")
	if err = warnCorrupt(err); err != nil {
		return err
	}
	u, err := v.Usage(ctx)
	if err != nil {
		return err
	}
	byVM := map[string]*vmStats{}
	var names []string
	for _, rp := range rps {
		s := byVM[rp.VM]
		if s == nil {
			s = &vmStats{VM: rp.VM}
			byVM[rp.VM] = s
			names = append(names, rp.VM)
		}
		t := rp.Totals()
		s.RecoveryPoints++
		s.Latest = rp.ID
		s.ProtectedBytes = t.DataBytes
		s.NewBytes += t.NewBytes
		s.StoredBytes += t.StoredBytes
	}
	sort.Strings(names)
	list := make([]vmStats, 0, len(names))
	for _, n := range names {
		list = append(list, *byVM[n])
	}
	if a.json {
		return a.printJSON(map[string]any{"vault": v.Location(), "vms": list, "usage": u})
	}
	fmt.Fprintf(a.out, "vault %s (%s)\n\n", v.Location(), v.Config().ID)
	tw := a.table("VM\tRECOVERY POINTS\tLATEST\tPROTECTED SIZE\tUPLOADED\tSTORED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.VM, s.RecoveryPoints, s.Latest, size(s.ProtectedBytes), size(s.NewBytes), size(s.StoredBytes))
	}
	tw.Flush()
	fmt.Fprintf(a.out, "\nstorage used: %s in %d packs, %s index, %d recovery points (%s)\n",
		size(u.TotalBytes), u.Packs, size(u.IndexBytes), u.RecoveryPoints, size(u.ManifestBytes))
	return nil
}

func (a *app) vmList(ctx context.Context, args []string) error {
	fs := a.flags("vm list")
	host := fs.String("host", a.cfg.Host, "host whose VMs to list")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usagef("vm list takes no arguments")
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "vm-list-" + *host + "-" + time.Now().UTC().Format("20060102T150405.000Z"), TaskQueue: a.cfg.TaskQueue,
		WorkflowExecutionTimeout: time.Minute,
	}, workflows.ListVMs, workflows.ListVMsInput{Host: *host})
	if err != nil {
		return fmt.Errorf("list vms of host %s: %w", *host, err)
	}
	var list activities.VMList
	if err := run.Get(ctx, &list); err != nil {
		return jobError{what: "list vms of host " + *host, err: err}
	}
	for _, p := range list.Problems {
		fmt.Fprintln(os.Stderr, "warning:", p)
	}
	vms := list.VMs
	if a.json {
		return a.printJSON(vms)
	}
	tw := a.table("NAME\tOS\tCPU\tMEMORY\tPOWER\tDISKS\tSIZE")
	for _, vm := range vms {
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

func (a *app) backup(ctx context.Context, args []string) error {
	fs := a.flags("backup")
	host := fs.String("host", a.cfg.Host, "host that owns the VM")
	wait := fs.Bool("wait", false, "wait for the job and show its progress")
	keep := fs.Bool("keep-snapshot", false, "keep the snapshot (instant-restore tier)")
	timeout := fs.Duration("timeout", a.cfg.BackupTimeout, "limit for the whole job")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("backup takes one VM name")
	}
	vm := pos[0]
	c, err := a.dial()
	if err != nil {
		return err
	}
	opts := client.StartWorkflowOptions{
		ID: workflows.BackupWorkflowID(vm), TaskQueue: a.cfg.TaskQueue,
		WorkflowExecutionTimeout: *timeout,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without this the SDK hands back the running job instead of saying so.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrVM.ValueSet(vm), workflows.AttrVault.ValueSet(a.cfg.Vault),
			workflows.AttrKind.ValueSet(workflows.KindBackup)),
	}
	in := workflows.BackupVMInput{VM: vm, Host: *host, Vault: a.cfg.Vault, KeepSnapshot: *keep, HeartbeatTimeout: a.cfg.HeartbeatTimeout}
	run, err := c.ExecuteWorkflow(ctx, opts, workflows.BackupVM, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return fmt.Errorf("a backup of vm %s is already running (job %s, run %s): one backup per VM at a time", vm, opts.ID, started.RunId)
	}
	if err != nil {
		return fmt.Errorf("start backup of vm %s: %w", vm, err)
	}
	if !*wait {
		if a.json {
			return a.printJSON(map[string]string{"job": run.GetID(), "run": run.GetRunID()})
		}
		fmt.Fprintf(a.out, "started backup job %s (run %s)\n", run.GetID(), run.GetRunID())
		return nil
	}
	fmt.Fprintf(os.Stderr, "backup job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.BackupVMResult
	if err := a.watch(ctx, c, run, &res); err != nil {
		return jobError{what: "backup of vm " + vm + " failed", err: err}
	}
	if a.json {
		return a.printJSON(res)
	}
	t := res.Totals
	fmt.Fprintf(a.out, "recovery point %s: %s, %s; scanned %s, changed %s, uploaded %s, stored %s\n",
		res.RecoveryPoint, res.Type, res.Consistency, size(t.ScannedBytes), size(t.ChangedBytes), size(t.NewBytes), size(t.StoredBytes))
	for _, n := range res.Notes {
		fmt.Fprintf(a.out, "note: %s\n", n)
	}
	return nil
}

func (a *app) restore(ctx context.Context, args []string) error {
	fs := a.flags("restore")
	host := fs.String("host", a.cfg.Host, "host that receives the restore")
	wait := fs.Bool("wait", false, "wait for the job and show its progress")
	newVM := fs.String("new-vm", "", "restore to a new VM of this name")
	replace := fs.Bool("replace", false, "replace the disks of an existing stopped VM (default: the recovery point's VM)")
	target := fs.String("vm", "", "with --replace: the VM whose disks to replace")
	dir := fs.String("disks", "", "restore the disk images only, into this directory")
	timeout := fs.Duration("timeout", a.cfg.RestoreTimeout, "limit for the whole job")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("restore takes one recovery point (VM/ID or ID)")
	}
	in := workflows.RestoreVMInput{RecoveryPoint: pos[0], Host: *host, Vault: a.cfg.Vault, HeartbeatTimeout: a.cfg.HeartbeatTimeout}
	modes := 0
	if *newVM != "" {
		modes++
		in.Mode, in.TargetVM = workflows.RestoreNewVM, *newVM
	}
	if *replace {
		modes++
		in.Mode, in.TargetVM = workflows.RestoreReplace, *target
	}
	if *dir != "" {
		modes++
		abs, err := filepath.Abs(*dir)
		if err != nil {
			return err
		}
		in.Mode, in.TargetDir = workflows.RestoreDisks, abs
	}
	if modes != 1 {
		return usagef("restore needs exactly one of --new-vm NAME, --replace, --disks DIR")
	}
	if *target != "" && !*replace {
		return usagef("--vm goes with --replace")
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	name := in.TargetVM
	if name == "" {
		name = strings.SplitN(pos[0], "/", 2)[0]
		if in.Mode == workflows.RestoreDisks {
			name = "disks"
		}
	}
	opts := client.StartWorkflowOptions{
		ID:        "restore-" + name + "-" + time.Now().UTC().Format("20060102T150405Z"),
		TaskQueue: a.cfg.TaskQueue, WorkflowExecutionTimeout: *timeout,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrVault.ValueSet(a.cfg.Vault), workflows.AttrKind.ValueSet(workflows.KindRestore)),
	}
	run, err := c.ExecuteWorkflow(ctx, opts, workflows.RestoreVM, in)
	if err != nil {
		return fmt.Errorf("start restore of %s: %w", pos[0], err)
	}
	if !*wait {
		if a.json {
			return a.printJSON(map[string]string{"job": run.GetID(), "run": run.GetRunID()})
		}
		fmt.Fprintf(a.out, "started restore job %s (run %s)\n", run.GetID(), run.GetRunID())
		return nil
	}
	fmt.Fprintf(os.Stderr, "restore job %s (run %s)\n", run.GetID(), run.GetRunID())
	var res workflows.RestoreVMResult
	if err := a.watch(ctx, c, run, &res); err != nil {
		return jobError{what: "restore of " + pos[0] + " failed", err: err}
	}
	if a.json {
		return a.printJSON(res)
	}
	var written int64
	for _, d := range res.Disks {
		written += d.Result.WrittenBytes
	}
	switch res.Mode {
	case workflows.RestoreDisks:
		fmt.Fprintf(a.out, "restored %s: %d disks into %s (%s written, every block verified)\n", res.RecoveryPoint, len(res.Disks), in.TargetDir, size(written))
	default:
		fmt.Fprintf(a.out, "restored %s to vm %s: %d disks (%s written, every block verified)\n", res.RecoveryPoint, res.VM, len(res.Disks), size(written))
	}
	return nil
}

// watch follows a job's progress query until it ends, drawing a progress
// line on stderr, then returns its result.
func (a *app) watch(ctx context.Context, c client.Client, run client.WorkflowRun, result any) error {
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, result) }()
	tty := isTerminal(os.Stderr)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := ""
	lastPrint := time.Time{}
	began, hinted := time.Now(), false
	for {
		select {
		case err := <-done:
			if tty && last != "" {
				fmt.Fprintln(os.Stderr)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("stopped watching job %s; it goes on (vmvault job show %s)", run.GetID(), run.GetID())
			}
			return err
		case <-tick.C:
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			p, err := queryProgress(qctx, c, run.GetID(), run.GetRunID())
			cancel()
			if err != nil {
				if !hinted && last == "" && time.Since(began) > 10*time.Second {
					hinted = true
					fmt.Fprintf(os.Stderr, "no answer from job %s yet: is a worker serving task queue %s?\n", run.GetID(), a.cfg.TaskQueue)
				}
				continue
			}
			line := progressLine(p)
			if tty {
				fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
			} else if line != last && time.Since(lastPrint) > 2*time.Second || p.Phase != phaseOf(last) {
				fmt.Fprintln(os.Stderr, line)
				lastPrint = time.Now()
			}
			last = line
		}
	}
}

func phaseOf(line string) string {
	if i := strings.IndexByte(line, ' '); i > 0 {
		return strings.Trim(line[:i], "[]")
	}
	return ""
}

func queryProgress(ctx context.Context, c client.Client, id, runID string) (workflows.Progress, error) {
	var p workflows.Progress
	v, err := c.QueryWorkflow(ctx, id, runID, workflows.QueryProgress)
	if err != nil {
		return p, err
	}
	return p, v.Get(&p)
}

func progressLine(p workflows.Progress) string {
	var size_, done, up int64
	var rate float64
	for _, d := range p.Disks {
		size_ += d.SizeBytes
		done += d.DoneBytes
		up += d.UploadedBytes
		if d.State == "running" {
			rate += d.BytesPerS
		}
	}
	pct := 0.0
	if size_ > 0 {
		pct = 100 * float64(done) / float64(size_)
	}
	const width = 30
	n := int(pct / 100 * width)
	bar := strings.Repeat("#", n) + strings.Repeat(".", width-n)
	line := fmt.Sprintf("[%s] %s %5.1f%% %s/%s", p.Phase, bar, pct, size(done), size(size_))
	if p.Kind == workflows.KindBackup {
		line += " uploaded " + size(up)
	}
	if rate > 0 {
		line += fmt.Sprintf(" %s/s", size(int64(rate)))
		if left := size_ - done; left > 0 {
			line += fmt.Sprintf(" eta %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	return line
}

func (a *app) rpList(ctx context.Context, args []string) error {
	fs := a.flags("rp list")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("rp list takes at most one VM name")
	}
	vm := ""
	if len(pos) == 1 {
		vm = pos[0]
	}
	v, err := a.openVault(ctx)
	if err != nil {
		return err
	}
	rps, err := v.ListRecoveryPoints(ctx, vm)
	if err = warnCorrupt(err); err != nil {
		return err
	}
	if vm != "" && len(rps) == 0 {
		return fmt.Errorf("vm %s has no recovery points in %s", vm, v.Location())
	}
	type row struct {
		ID           string           `json:"id"`
		VM           string           `json:"vm"`
		Time         time.Time        `json:"time"`
		Type         vault.BackupType `json:"type"`
		Consistency  string           `json:"consistency"`
		LogicalBytes int64            `json:"logical_bytes"`
		Totals       vault.DiskStats  `json:"totals"`
		Parent       string           `json:"parent,omitempty"`
		Job          string           `json:"job"`
	}
	rows := make([]row, len(rps))
	for i, rp := range rps {
		var logical int64
		for _, d := range rp.Disks {
			logical += d.SizeBytes
		}
		rows[i] = row{ID: rp.Ref(), VM: rp.VM, Time: rp.CompletedAt, Type: rp.Type, Consistency: rp.Consistency, LogicalBytes: logical, Totals: rp.Totals(), Parent: rp.Parent, Job: rp.Job}
	}
	if a.json {
		return a.printJSON(rows)
	}
	tw := a.table("RECOVERY POINT\tTIME\tTYPE\tCONSISTENCY\tLOGICAL\tDATA\tNEW\tSTORED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Time.Format(time.RFC3339), r.Type, r.Consistency,
			size(r.LogicalBytes), size(r.Totals.DataBytes), size(r.Totals.NewBytes), size(r.Totals.StoredBytes))
	}
	return tw.Flush()
}

func (a *app) jobList(ctx context.Context, args []string) error {
	fs := a.flags("job list")
	vm := fs.String("vm", "", "only jobs of this VM")
	kind := fs.String("kind", "", "only backup or restore jobs")
	limit := fs.Int("limit", 50, "at most this many jobs")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usagef("job list takes no arguments")
	}
	q := []string{"VmvaultKind IS NOT NULL"}
	if *vm != "" {
		q = append(q, fmt.Sprintf("VmvaultVM = %q", *vm))
	}
	if *kind != "" {
		if *kind != workflows.KindBackup && *kind != workflows.KindRestore {
			return usagef("--kind: want backup or restore")
		}
		q = append(q, fmt.Sprintf("VmvaultKind = %q", *kind))
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	type job struct {
		ID            string    `json:"id"`
		Run           string    `json:"run"`
		Kind          string    `json:"kind"`
		VM            string    `json:"vm"`
		Status        string    `json:"status"`
		Start         time.Time `json:"start"`
		Close         time.Time `json:"close,omitempty"`
		BackupType    string    `json:"backup_type,omitempty"`
		Consistency   string    `json:"consistency,omitempty"`
		RecoveryPoint string    `json:"recovery_point,omitempty"`
	}
	var jobs []job
	var token []byte
	for len(jobs) < *limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: strings.Join(q, " AND "), NextPageToken: token, PageSize: int32(min(*limit, 100))})
		if err != nil {
			return fmt.Errorf("list jobs: %w", err)
		}
		for _, e := range resp.Executions {
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
				BackupType: str("VmvaultBackupType"), Consistency: str("VmvaultConsistency"), RecoveryPoint: str("VmvaultRecoveryPoint")}
			if e.CloseTime != nil {
				j.Close = e.CloseTime.AsTime()
			}
			jobs = append(jobs, j)
		}
		token = resp.NextPageToken
		if len(token) == 0 {
			break
		}
	}
	if len(jobs) > *limit {
		jobs = jobs[:*limit]
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Kind, dash(j.VM), j.Status, j.Start.UTC().Format(time.RFC3339), dur, dash(j.BackupType), dash(j.Consistency), dash(j.RecoveryPoint))
	}
	return tw.Flush()
}

func (a *app) jobShow(ctx context.Context, args []string) error {
	fs := a.flags("job show")
	runID := fs.String("run", "", "run id (default: the latest run of the job)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("job show takes one job id")
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	d, err := c.DescribeWorkflowExecution(ctx, pos[0], *runID)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("job %s not found in namespace %s", pos[0], a.cfg.Namespace)
	}
	if err != nil {
		return fmt.Errorf("job %s: %w", pos[0], err)
	}
	info := d.WorkflowExecutionInfo
	status := strings.ToLower(strings.TrimPrefix(info.Status.String(), "WORKFLOW_EXECUTION_STATUS_"))
	p, qerr := queryProgress(ctx, c, pos[0], info.Execution.RunId)
	if a.json {
		return a.printJSON(map[string]any{"job": pos[0], "run": info.Execution.RunId, "type": info.Type.Name, "status": status,
			"start": info.StartTime.AsTime(), "progress": p})
	}
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(a.out, "%-15s %s\n", k, v)
		}
	}
	field("job", pos[0])
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
	field("phase", p.Phase)
	field("type", p.BackupType)
	field("consistency", p.Consistency)
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

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// size formats bytes in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// warnCorrupt turns unreadable recovery points into warnings when the others
// could be read, so one bad manifest does not hide a VM's history.
func warnCorrupt(err error) error {
	if err == nil || !errors.Is(err, vault.ErrCorrupt) {
		return err
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(os.Stderr, "warning:", line)
	}
	return nil
}
