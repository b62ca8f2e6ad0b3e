package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeJobs is a visibility store of running backups, two to a page, each
// with the limit its input gave it (0: none given).
type fakeJobs struct {
	started map[string]time.Time
	limits  map[string]time.Duration
	order   []string
	query   string
}

func (f *fakeJobs) ListWorkflow(_ context.Context, r *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	f.query = r.Query
	from := 0
	if len(r.NextPageToken) > 0 {
		from = int(r.NextPageToken[0])
	}
	resp := &workflowservice.ListWorkflowExecutionsResponse{}
	for i := from; i < len(f.order) && i < from+2; i++ {
		id := f.order[i]
		resp.Executions = append(resp.Executions, &workflowpb.WorkflowExecutionInfo{
			Execution: &commonpb.WorkflowExecution{WorkflowId: id, RunId: "run-" + id},
			StartTime: timestamppb.New(f.started[id]),
		})
	}
	if from+2 < len(f.order) {
		resp.NextPageToken = []byte{byte(from + 2)}
	}
	return resp, nil
}

func (f *fakeJobs) GetWorkflowHistory(_ context.Context, id, runID string, _ bool, _ enumspb.HistoryEventFilterType) client.HistoryEventIterator {
	in := map[string]any{"vm": id}
	if l := f.limits[id]; l > 0 {
		in["limit"] = l
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(in)
	if err != nil {
		panic(err)
	}
	return &oneEvent{ev: &historypb.HistoryEvent{Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{
		WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{p}}},
	}}}
}

type oneEvent struct{ ev *historypb.HistoryEvent }

func (o *oneEvent) HasNext() bool { return o.ev != nil }
func (o *oneEvent) Next() (*historypb.HistoryEvent, error) {
	ev := o.ev
	o.ev = nil
	return ev, nil
}

func TestLongestBackupLimit(t *testing.T) {
	mark := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	jobs := &fakeJobs{
		order:   []string{"backup-a", "backup-b", "backup-c", "backup-d", "backup-e"},
		started: map[string]time.Time{"backup-a": mark.Add(-time.Hour), "backup-b": mark.Add(-2 * time.Hour), "backup-c": mark.Add(-3 * time.Hour), "backup-d": mark.Add(time.Minute), "backup-e": mark.Add(-time.Minute)},
		limits:  map[string]time.Duration{"backup-a": 2 * time.Hour, "backup-c": 30 * time.Hour, "backup-d": 100 * time.Hour},
	}
	ctx := context.Background()
	all, err := LongestBackupLimit(ctx, jobs, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if all != (BackupLimit{Limit: 100 * time.Hour, Job: "backup-d", Running: 5}) {
		t.Errorf("every running backup: %+v", all)
	}
	if !strings.Contains(jobs.query, "WorkflowType = 'BackupVM'") || !strings.Contains(jobs.query, "ExecutionStatus = 'Running'") {
		t.Errorf("query %q", jobs.query)
	}
	// The sweep counts only those started before the mark: d started after.
	before, err := LongestBackupLimit(ctx, jobs, mark)
	if err != nil {
		t.Fatal(err)
	}
	if before != (BackupLimit{Limit: 30 * time.Hour, Job: "backup-c", Running: 4}) {
		t.Errorf("backups started before the mark: %+v", before)
	}
	// No limit given: the default, 24h.
	jobs.order = []string{"backup-b"}
	if l, err := LongestBackupLimit(ctx, jobs, time.Time{}); err != nil || l.Limit != DefaultBackupLimit {
		t.Errorf("backup without a limit: %+v %v", l, err)
	}
	jobs.order = nil
	if l, err := LongestBackupLimit(ctx, jobs, time.Time{}); err != nil || l != (BackupLimit{}) {
		t.Errorf("no backup running: %+v %v", l, err)
	}
}

func TestCheckGCGrace(t *testing.T) {
	l := BackupLimit{Limit: 24 * time.Hour, Job: "backup-web01", Running: 2}
	if err := CheckGCGrace(25*time.Hour, l); err != nil {
		t.Errorf("25h over a 24h limit: %v", err)
	}
	if err := CheckGCGrace(time.Second, BackupLimit{}); err != nil {
		t.Errorf("no backup running: %v", err)
	}
	for _, grace := range []time.Duration{24 * time.Hour, time.Hour} {
		err := CheckGCGrace(grace, l)
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || app.Type() != ErrTypeGCGraceTooShort || !app.NonRetryable() {
			t.Fatalf("grace %s: %v", grace, err)
		}
		for _, want := range []string{"grace period " + grace.String(), "24h0m0s", "backup-web01", "--grace (VMVAULT_GC_GRACE)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("grace %s: %q does not say %q", grace, err, want)
			}
		}
	}
}

// The worker without a Temporal client cannot check the rule, so it refuses.
func TestLongestBackupLimitWithoutJobs(t *testing.T) {
	_, err := (&VaultActivities{}).LongestBackupLimit(context.Background(), BackupLimitInput{})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || !app.NonRetryable() {
		t.Fatalf("%v", err)
	}
}
