package harness

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

func TestBinDirOverride(t *testing.T) {
	t.Setenv("VMVAULT_BIN_DIR", "/opt/vmvault/bin")
	if got := BinDir(); got != "/opt/vmvault/bin" {
		t.Fatalf("BinDir() = %q with VMVAULT_BIN_DIR set", got)
	}
}

func TestBinDirModuleRoot(t *testing.T) {
	t.Setenv("VMVAULT_BIN_DIR", "")
	got := BinDir()
	if !strings.HasSuffix(got, "/bin") || strings.Contains(got, "testsuite") {
		t.Fatalf("BinDir() = %q, want <module root>/bin", got)
	}
}

func TestFreePortDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if p <= 0 || seen[p] {
			t.Fatalf("FreePort returned %d twice or invalid", p)
		}
		seen[p] = true
	}
}

func TestMinIO(t *testing.T) {
	m := StartMinIO(t)
	a, b := m.NewBucket(t), m.NewBucket(t)
	if a == b {
		t.Fatalf("NewBucket returned %q twice", a)
	}
	// Stop and Start keep the endpoint and the data.
	ctx := context.Background()
	be, err := s3.New(ctx, m.Config(a))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Put(ctx, "k", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	end := m.Endpoint
	m.Stop()
	if _, err := be.Get(ctx, "k"); err == nil {
		t.Fatal("get from a stopped MinIO succeeded")
	}
	m.Start()
	if got, err := be.Get(ctx, "k"); err != nil || string(got) != "kept" || m.Endpoint != end {
		t.Fatalf("after restart at %s (was %s): %q, %v", m.Endpoint, end, got, err)
	}
}

func TestTemporalSearchAttributes(t *testing.T) {
	tp := StartTemporal(t)
	c := tp.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.OperatorService().ListSearchAttributes(ctx,
		&operatorservice.ListSearchAttributesRequest{Namespace: tp.Namespace})
	if err != nil {
		t.Fatalf("list search attributes: %v", err)
	}
	for _, sa := range SearchAttributes {
		name, typ, _ := strings.Cut(sa, "=")
		got, ok := resp.GetCustomAttributes()[name]
		if !ok {
			t.Errorf("search attribute %s missing; custom attributes: %v", name,
				slices.Sorted(maps.Keys(resp.GetCustomAttributes())))
			continue
		}
		if want := enums.IndexedValueType(enums.IndexedValueType_value["INDEXED_VALUE_TYPE_"+strings.ToUpper(typ)]); got != want {
			t.Errorf("search attribute %s has type %v, want %v", name, got, want)
		}
	}
}

// A MinIO whose port another process took between FreePort and its bind
// exits; awaitReady says the port was taken, so StartMinIO and
// StartTemporal try again on other ports instead of failing the test.
func TestPortTakenIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := startProcess(t, "minio", []string{"server", t.TempDir(), "--address", l.Addr().String(),
		"--console-address", "127.0.0.1:" + strconv.Itoa(FreePort(t))},
		[]string{"MINIO_ROOT_USER=vmvault-test", "MINIO_ROOT_PASSWORD=" + randomHex(20), "MINIO_CI_CD=1"})
	err = p.awaitReady(60*time.Second, func() error { return errNotReady })
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("minio on a taken port: %v", err)
	}
	// And the retry loop gets a working server.
	if m := StartMinIO(t); m.Endpoint == "" {
		t.Fatal("no endpoint")
	}
}

// A restarted server keeps its state (the SQLite file) and its address: a
// workflow started before is still running after, and the search
// attributes are still registered.
func TestTemporalRestart(t *testing.T) {
	tp := StartTemporal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := tp.Client(t)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "survives-restart", TaskQueue: "nobody-polls"}, "NoSuchWorkflow")
	if err != nil {
		t.Fatal(err)
	}
	tp.Restart(t, time.Second)
	// The old client reconnects by itself.
	d, err := c.DescribeWorkflowExecution(ctx, "survives-restart", run.GetRunID())
	if err != nil {
		t.Fatalf("describe after restart: %v", err)
	}
	if st := d.WorkflowExecutionInfo.Status; st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("workflow after restart: %v, want running", st)
	}
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: tp.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range SearchAttributes {
		if name, _, _ := strings.Cut(sa, "="); resp.GetCustomAttributes()[name] == enums.INDEXED_VALUE_TYPE_UNSPECIFIED {
			t.Errorf("search attribute %s lost in the restart", name)
		}
	}
}
