package workflows

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/policy"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
)

var retentionStart = time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)

func TestApplyRetentionMocked(t *testing.T) {
	env := newEnv(t)
	env.SetStartTime(retentionStart)
	targets := []RetentionTarget{
		{VM: "a", Policy: "default", Retention: policy.Retention{Daily: 7}, TimeZone: "UTC"},
		{VM: "b", Policy: "gold", Retention: policy.Retention{Daily: 7, Weekly: 4}, TimeZone: "Europe/Berlin"},
		{VM: "c", Policy: "bad", TimeZone: "Mars/Olympus"},
		{VM: "d", Policy: "gone", Problem: "vm d is protected by policy \"gone\", which does not exist: nothing expired"},
	}
	env.OnActivity(vaultAct.ListRetentionTargets, mock.Anything, activities.RetentionTargetsInput{}).
		Return(activities.RetentionTargets{Vault: testPin, Targets: targets}, nil).Once()
	expires := &recorder[activities.ExpireInput]{}
	env.OnActivity(vaultAct.ExpireRecoveryPoints, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ExpireInput) (activities.ExpireResult, error) {
		expires.add(in)
		switch in.Target.VM {
		case "a":
			return activities.ExpireResult{VM: "a", Kept: 7, Expired: []string{"a/1", "a/2"}}, nil
		case "c":
			return activities.ExpireResult{}, temporal.NewNonRetryableApplicationError("time zone", activities.ErrTypeBadRequest, nil)
		}
		return activities.ExpireResult{VM: in.Target.VM, Kept: 3}, nil
	})
	env.OnActivity(vaultAct.PurgeDeleted, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PurgeInput) (activities.PurgeResult, error) {
		require.Equal(t, retentionStart, in.Now)
		require.Equal(t, 14*24*time.Hour, in.KeepDeletedFor)
		require.Equal(t, testPin, in.Vault)
		return activities.PurgeResult{Purged: []string{"a/0"}}, nil
	}).Once()

	env.ExecuteWorkflow(ApplyRetention, ApplyRetentionInput{KeepDeletedFor: 14 * 24 * time.Hour})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RetentionResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, retentionStart, res.Now)
	require.Len(t, res.VMs, 4)
	require.Equal(t, []string{"c", "d"}, res.Failed)
	require.Contains(t, res.VMs[3].Error, "does not exist")
	require.Contains(t, res.VMs[2].Error, "time zone")
	require.Equal(t, []string{"a/0"}, res.Purged)
	require.Equal(t, "retention: 4 VMs, soft-deleted 2 expired recovery points, purged 1; failed for c, d", res.Summary())
	ins := expires.all()
	require.Len(t, ins, 3)
	for i, in := range ins {
		require.Equal(t, targets[i], in.Target)
		require.Equal(t, retentionStart, in.Now)
		require.Equal(t, testPin, in.Vault)
	}
	v, err := env.QueryWorkflow(QueryProgress)
	require.NoError(t, err)
	var p Progress
	require.NoError(t, v.Get(&p))
	require.Equal(t, PhaseDone, p.Phase)
	require.Equal(t, KindRetention, p.Kind)
	require.Contains(t, p.Notes, "a: kept 7, expired a/1 a/2")
}

func TestApplyRetentionRefusesNoPeriod(t *testing.T) {
	env := newEnv(t)
	never(env, vaultAct.ListRetentionTargets)
	env.ExecuteWorkflow(ApplyRetention, ApplyRetentionInput{})
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(env.GetWorkflowError(), &appErr))
	require.Equal(t, activities.ErrTypeBadRequest, appErr.Type())
	assertNotCalled(t, env, "ListRetentionTargets")
}

// TestApplyRetentionOverDays runs the workflow with the real activities on
// a real vault, at chosen workflow times: day 0 expires the older points of
// the day (soft-deleted, the newest kept), a dry run on day 1 changes
// nothing, day 15 purges them.
func TestApplyRetentionOverDays(t *testing.T) {
	ctx := context.Background()
	be, err := fs.New(t.TempDir())
	require.NoError(t, err)
	v, err := vault.Init(ctx, be, []byte("retention test secret"), vault.InitOptions{BlockSize: 64 << 10, PackSize: 256 << 10, KDFMemoryKiB: 8192, KDFTime: 1, KDFThreads: 1})
	require.NoError(t, err)
	r, err := v.BackupDisk(ctx, bytesDisk(bytes.Repeat([]byte("vmvault "), 64<<10)), vault.BackupOptions{Disk: "os"})
	require.NoError(t, err)
	for i, id := range []string{"p1", "p2", "p3"} {
		require.NoError(t, v.SaveRecoveryPoint(ctx, vault.RecoveryPoint{ID: id, VM: "web1", StartedAt: retentionStart.Add(time.Duration(i-3) * time.Hour),
			Disks: []vault.DiskRecord{{Name: "os", SizeBytes: r.Size, Root: r.Root}}}))
	}
	rules := []RetentionTarget{{VM: "web1", Retention: policy.Retention{Daily: 1}, TimeZone: "Europe/Berlin"}}
	run := func(at time.Time, in ApplyRetentionInput) RetentionResult {
		env := newEnv(t)
		env.RegisterActivity(&activities.VaultActivities{Vault: v})
		env.SetStartTime(at)
		in.Targets = rules
		env.ExecuteWorkflow(ApplyRetention, in)
		require.NoError(t, env.GetWorkflowError())
		var res RetentionResult
		require.NoError(t, env.GetWorkflowResult(&res))
		return res
	}
	period := 14 * 24 * time.Hour

	res := run(retentionStart, ApplyRetentionInput{KeepDeletedFor: period})
	require.Equal(t, []string{"web1/p1", "web1/p2"}, res.VMs[0].Expired)
	require.Equal(t, 1, res.VMs[0].Kept)
	require.Equal(t, retentionStart.Add(period), res.VMs[0].PurgeAfter)
	rps, err := v.ListRecoveryPoints(ctx, "web1")
	require.NoError(t, err)
	require.Len(t, rps, 1)
	require.Equal(t, "p3", rps[0].ID)

	res = run(retentionStart.Add(15*24*time.Hour), ApplyRetentionInput{KeepDeletedFor: period, DryRun: true})
	require.Empty(t, res.VMs[0].Expired, "the newest point is never expired")
	require.Equal(t, []string{"web1/p1", "web1/p2"}, res.Purged)
	del, err := v.ListDeleted(ctx, "web1")
	require.NoError(t, err)
	require.Len(t, del, 2, "a dry run purges nothing")

	res = run(retentionStart.Add(24*time.Hour), ApplyRetentionInput{KeepDeletedFor: period})
	require.Empty(t, res.Purged, "not yet past the period")
	res = run(retentionStart.Add(15*24*time.Hour), ApplyRetentionInput{KeepDeletedFor: period})
	require.Equal(t, []string{"web1/p1", "web1/p2"}, res.Purged)
	del, err = v.ListDeleted(ctx, "")
	require.NoError(t, err)
	require.Empty(t, del)
	_, err = v.LoadRecoveryPoint(ctx, "web1/p3")
	require.NoError(t, err)
}

type bytesDisk []byte

func (d bytesDisk) ReadAt(p []byte, off int64) (int, error) { return copy(p, d[off:]), nil }
func (d bytesDisk) Size() int64                             { return int64(len(d)) }
