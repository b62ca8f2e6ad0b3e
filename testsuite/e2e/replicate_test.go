package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	enums "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
	"github.com/vmvault/vmvault/testsuite/harness"
	"github.com/vmvault/vmvault/testsuite/vmfixture"
	"github.com/vmvault/vmvault/workflows"
)

// newBucket creates a bucket on m, with Object Lock enabled when lock.
func newBucket(t *testing.T, m *harness.MinIO, lock bool) string {
	t.Helper()
	if !lock {
		return m.NewBucket(t)
	}
	name := "t-locked-" + strings.ToLower(strings.ReplaceAll(time.Now().Format("150405.000000"), ".", ""))
	_, err := awsClient(t, m).CreateBucket(context.Background(), &awss3.CreateBucketInput{
		Bucket: aws.String(name), ObjectLockEnabledForBucket: aws.Bool(true)})
	if err != nil {
		t.Fatalf("create bucket %s with object lock: %v", name, err)
	}
	return name
}

func awsClient(t *testing.T, m *harness.MinIO) *awss3.Client {
	t.Helper()
	return awss3.New(awss3.Options{
		Region: m.Region, BaseEndpoint: aws.String(m.Endpoint), UsePathStyle: true,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey}, nil
		})),
	})
}

// addSecondary makes a second bucket on the env's MinIO the vault's
// secondary for every later worker and CLI run.
func (e *env) addSecondary() (string, storage.Backend) {
	e.t.Helper()
	bucket := e.minio.NewBucket(e.t)
	e.vars = append(e.vars, "VMVAULT_SECONDARY_VAULT=s3://"+bucket+"/vault")
	be, err := s3.New(context.Background(), withPrefix(e.minio.Config(bucket), "vault"))
	if err != nil {
		e.t.Fatal(err)
	}
	return bucket, be
}

// versions lists bucket's objects under prefix with their mtime and ETag.
func versions(t *testing.T, m *harness.MinIO, bucket, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	p := awss3.NewListObjectsV2Paginator(awsClient(t, m), &awss3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToTime(o.LastModified).Format(time.RFC3339Nano) + " " + aws.ToString(o.ETag)
		}
	}
	return out
}

func (e *env) restoreFromSecondaryMatches(rp string, want map[string]string) {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "restore")
	e.mustCLI("restore", rp, "--from-secondary", "--disks", dir, "--wait")
	got := diskHashes(e.t, dir)
	for d, h := range want {
		if got[d] != h {
			e.t.Fatalf("recovery point %s from the secondary: disk %s sha256 %s, source had %s", rp, d, got[d], h)
		}
	}
}

// TestReplicateRestoreFromSecondary: every backup replicates its point to
// the secondary; with the primary bucket emptied, every recovery point
// lists and restores bit-exact from the secondary.
func TestReplicateRestoreFromSecondary(t *testing.T) {
	e := newEnv(t, envOpts{s3: true})
	_, sec := e.addSecondary()
	e.startWorker(nil)
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("app1", 7)); err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(e.vmsRoot(), "app1")
	type point struct {
		rp   string
		hash map[string]string
	}
	var points []point
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if i > 0 {
			if err := vmfixture.Mutate(e.vmsRoot(), "app1", int64(10*i), 8, uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		res := e.backup("app1")
		done := time.Now()
		// The backup asked for a replication: measure until its manifest is on the secondary.
		key := "recoverypoints/" + res.RecoveryPoint
		for {
			if _, err := sec.Stat(ctx, key); err == nil {
				break
			} else if !errors.Is(err, storage.ErrNotFound) {
				t.Fatal(err)
			}
			if time.Since(done) > 2*time.Minute {
				t.Fatalf("%s not replicated within 2 minutes", res.RecoveryPoint)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("replication lag of %s (%d bytes stored): %.2fs from the end of the backup to its manifest on the secondary",
			res.RecoveryPoint, res.Totals.StoredBytes, time.Since(done).Seconds())
		points = append(points, point{res.RecoveryPoint, diskHashes(t, vmDir)})
	}
	out := e.mustCLI("vault", "replicate", "--wait")
	t.Logf("vault replicate: %s", strings.TrimSpace(out))
	if dir := os.Getenv("VMVAULT_RECORD_HISTORIES"); dir != "" {
		// Histories for testsuite/replay: a backup that asked for a
		// replication, and the replication job.
		e.recordHistory(dir, "backup-replicated.json", workflows.BackupWorkflowID("app1"))
		e.recordHistory(dir, "replicate-vault.json", workflows.ReplicateWorkflowID(e.openVault().Config().ID))
	}
	var stats struct {
		Replication vault.ReplicationStatus `json:"replication"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("vault", "stats", "--json")), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Replication.VMs) != 1 || stats.Replication.VMs[0].Missing != 0 || stats.Replication.MissingObjects != 0 {
		t.Fatalf("replication lag after replicate --wait: %+v", stats.Replication)
	}
	out = e.mustCLI("vault", "check", "--secondary")
	if !strings.Contains(out, "every recovery point can be restored") || !strings.Contains(out, "primary and secondary hold the same") {
		t.Fatalf("vault check --secondary:\n%s", out)
	}
	t.Logf("vault check --secondary:\n%s", out)

	// The primary site is gone: every object of the primary vault deleted.
	for k := range e.objects("") {
		if err := e.be.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.objects("")); n != 0 {
		t.Fatalf("%d objects left on the primary", n)
	}
	var rows []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("rp", "list", "app1", "--from-secondary", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(points) {
		t.Fatalf("rp list --from-secondary: %+v", rows)
	}
	for _, p := range points {
		e.restoreFromSecondaryMatches(p.rp, p.hash)
	}
	// A primary that is gone is not mirrored as an empty vault.
	e.failCLI("no vault", "vault", "replicate", "--wait")
	n := 0
	if err := sec.List(ctx, "recoverypoints/", func(string, int64) error { n++; return nil }); err != nil || n != len(points) {
		t.Fatalf("secondary after a replicate of the gone primary: %d recovery points, %v", n, err)
	}
}

// TestReplicateWorkerKilled: a replication killed with its worker resumes
// on another and copies nothing twice (every object on the secondary
// before the kill keeps its mtime and ETag).
func TestReplicateWorkerKilled(t *testing.T) {
	e := newEnv(t, envOpts{s3: true, initArgs: []string{"--pack-size", "1048576"}})
	w := e.startWorker(nil)
	spec := vmfixture.Spec{Name: "big2", OSSize: 32 * mib, DataDisks: []int64{192 * mib}, Seed: 9}
	if _, err := vmfixture.Create(e.vmsRoot(), spec); err != nil {
		t.Fatal(err)
	}
	if err := vmfixture.Mutate(e.vmsRoot(), "big2", 0, 192, 4); err != nil {
		t.Fatal(err)
	}
	want := diskHashes(t, filepath.Join(e.vmsRoot(), "big2"))
	res := e.backup("big2")
	w.kill()
	bucket, sec := e.addSecondary()
	// Throttled to 16 MiB/s: ~13 s for ~200 MiB, time to kill it midway.
	w2 := e.startWorker([]string{"VMVAULT_REPLICATION_LIMIT_MIB=16"})
	// Nothing replicated yet: the whole point is behind.
	var stats struct {
		Replication vault.ReplicationStatus `json:"replication"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI("vault", "stats", "--json")), &stats); err != nil {
		t.Fatal(err)
	}
	if l := stats.Replication.VMs; len(l) != 1 || l[0].Missing != 1 || l[0].MissingBytes != res.Totals.StoredBytes {
		t.Fatalf("replication lag before any replication: %+v (stored %d)", l, res.Totals.StoredBytes)
	}
	t.Logf("vault stats before replication:\n%s", e.mustCLI("vault", "stats"))
	e.mustCLI("vault", "replicate")
	id := workflows.ReplicateWorkflowID(e.openVault().Config().ID)
	c := e.tp.Client(t)
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no replication progress seen")
		}
		d, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		if d.WorkflowExecutionInfo.CloseTime != nil {
			t.Fatal("replication finished before the worker could be killed")
		}
		copied := 0
		for _, pa := range d.PendingActivities {
			if pa.ActivityType.GetName() == "ReplicateVault" && pa.HeartbeatDetails != nil {
				var hb struct {
					Copied int `json:"copied"`
				}
				if json.Unmarshal(pa.HeartbeatDetails.Payloads[0].Data, &hb) == nil {
					copied = hb.Copied
				}
			}
		}
		if copied >= 40 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	w2.kill()
	before := versions(t, e.minio, bucket, "vault/packs/")
	t.Logf("worker killed with %d packs on the secondary", len(before))
	e.startWorker(nil)
	var out workflows.ReplicateVaultResult
	gctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := c.GetWorkflow(gctx, id, "").Get(gctx, &out); err != nil {
		t.Fatalf("replication after the worker was killed: %v", err)
	}
	if out.Last.Attempts < 2 {
		t.Fatalf("replication was not retried: %+v", out.Last)
	}
	after := versions(t, e.minio, bucket, "vault/packs/")
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("%s was copied twice: %s then %s", k, v, after[k])
		}
	}
	primaryPacks := len(e.objects("packs/"))
	if len(after) != primaryPacks {
		t.Fatalf("secondary holds %d packs, primary %d", len(after), primaryPacks)
	}
	t.Logf("attempt %d copied %d objects (%d bytes) in %.1fs after earlier attempts copied %d; %d packs before the kill kept their mtime",
		out.Last.Attempts, out.Last.Copied, out.Last.CopiedBytes, out.Last.Duration, out.Last.CopiedBefore, len(before))
	if cmp, err := vault.Compare(ctx, e.be, sec); err != nil || !cmp.Same() {
		t.Fatalf("primary and secondary differ: %+v %v", cmp, err)
	}
	e.restoreFromSecondaryMatches(res.RecoveryPoint, want)

	// Throughput of one full replication, MinIO to MinIO, outside Temporal.
	fresh := e.minio.NewBucket(t)
	dst, err := s3.New(ctx, withPrefix(e.minio.Config(fresh), "vault"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := vault.Replicate(ctx, e.be, dst, vault.ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full replication: %d objects, %d bytes in %.2fs: %.1f MiB/s", rep.Copied, rep.CopiedBytes, rep.Duration, float64(rep.CopiedBytes)/rep.Duration/(1<<20))
}

// TestImmutableObjectLock: an immutable vault with object lock writes its
// packs locked, so a direct delete of a pack version with the bucket's
// credentials fails, and refuses an early rp delete with a clear error.
func TestImmutableObjectLock(t *testing.T) {
	e := newEnv(t, envOpts{s3: true, objectLock: true})
	e.startWorker(nil)
	out := e.mustCLI("vault", "set-immutable", "--lock-days", "1", "--object-lock", "governance")
	if !strings.Contains(out, "object lock (governance mode)") {
		t.Fatalf("set-immutable: %s", out)
	}
	e.failCLI("immutability cannot be changed or unset", "vault", "set-immutable", "--lock-days", "2")
	if _, err := vmfixture.Create(e.vmsRoot(), smallSpec("app3", 3)); err != nil {
		t.Fatal(err)
	}
	res := e.backup("app3")

	ctx := context.Background()
	cl := awsClient(t, e.minio)
	var pack string
	for k := range e.objects("packs/") {
		pack = "vault/" + k
		break
	}
	head, err := cl.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(pack)})
	if err != nil {
		t.Fatal(err)
	}
	until := aws.ToTime(head.ObjectLockRetainUntilDate)
	if head.ObjectLockMode != types.ObjectLockModeGovernance || until.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("pack %s: lock %q until %s", pack, head.ObjectLockMode, until)
	}
	_, err = cl.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(pack), VersionId: head.VersionId})
	var api smithy.APIError
	// AWS answers AccessDenied, MinIO InvalidRequest "Object is WORM protected".
	if err == nil || !errors.As(err, &api) || (api.ErrorCode() != "AccessDenied" && !strings.Contains(api.ErrorMessage(), "WORM")) {
		t.Fatalf("direct delete of locked pack %s: %v, want it refused", pack, err)
	}
	t.Logf("direct delete of %s (version %s): %s", pack, aws.ToString(head.VersionId), api.ErrorMessage())
	if _, err := cl.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(pack)}); err != nil {
		t.Fatalf("locked pack gone: %v", err)
	}
	line := e.failCLI("is protected until", "rp", "delete", res.RecoveryPoint)
	if !strings.Contains(line, res.RecoveryPoint) {
		t.Fatalf("error does not name the point: %s", line)
	}
	t.Logf("rp delete: %s", line)
	// Retention cannot be shortened, and unprotect --delete-data changes nothing.
	e.mustCLI("policy", "create", "gold", "--daily", "30")
	e.failCLI("retention cannot be shortened in an immutable vault (daily 30 -> 10)", "policy", "update", "gold", "--daily", "10")
	e.mustCLI("protect", "app3", "--policy", "gold")
	t.Logf("unprotect: %s", e.failCLI("unprotect app3 --delete-data refused, nothing was changed", "unprotect", "app3", "--delete-data"))
	if out := e.mustCLI("protected"); !strings.Contains(out, "app3") {
		t.Fatalf("app3 no longer protected after a refused unprotect:\n%s", out)
	}
	if out := e.mustCLI("vault", "stats"); !strings.Contains(out, "immutable since") {
		t.Fatalf("vault stats does not say the vault is immutable:\n%s", out)
	}
	e.restoreDisksMatch(res.RecoveryPoint, diskHashes(t, filepath.Join(e.vmsRoot(), "app3")))
}

// recordHistory writes the latest run of workflow id as JSON, the format
// testsuite/replay reads.
func (e *env) recordHistory(dir, name, id string) {
	e.t.Helper()
	ctx := context.Background()
	it := e.tp.Client(e.t).GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var h historypb.History
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			e.t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&h)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}
