package harness

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/vmvault/vmvault/workflows"
)

// SearchAttributes are vmvault's search attributes as name=Type pairs, the
// form `temporal server start-dev --search-attribute` takes.
var SearchAttributes = func() []string {
	var out []string
	for _, n := range workflows.SearchAttributeNames {
		out = append(out, n+"=Keyword")
	}
	return out
}()

// Temporal is a running Temporal dev server owned by one test, seen
// through one of its namespaces. Its state is in a SQLite file, so it can
// be stopped and started again (Restart) with every workflow, schedule and
// task where it was.
type Temporal struct {
	HostPort  string // frontend gRPC, "127.0.0.1:port"
	Namespace string // "default", which start-dev always creates, or one of In's
	srv       *devServer
}

// devServer is the process behind every namespace view of a server.
type devServer struct {
	args       []string
	namespaces []string
	proc       *process
}

// StartTemporal starts `bin/temporal server start-dev` on free ports with a
// fresh SQLite file, vmvault's search attributes and, besides "default",
// the namespaces named (see In), waits until a client can connect, and
// stops it when the test ends.
func StartTemporal(t testing.TB, namespaces ...string) *Temporal {
	t.Helper()
	tp := &Temporal{Namespace: "default", srv: &devServer{namespaces: append([]string{"default"}, namespaces...)}}
	db := filepath.Join(t.TempDir(), "temporal.db")
	startOnFreePorts(t, func() error {
		port := FreePort(t)
		tp.HostPort = "127.0.0.1:" + strconv.Itoa(port)
		args := []string{"server", "start-dev",
			"--headless",
			"--ip", "127.0.0.1",
			"--port", strconv.Itoa(port),
			"--http-port", strconv.Itoa(FreePort(t)),
			"--metrics-port", strconv.Itoa(FreePort(t)),
			// Headless, but the UI port still defaults to port+1000, which
			// may be taken: pin it to a free one.
			"--ui-port", strconv.Itoa(FreePort(t)),
			"--db-filename", db,
			"--log-level", "warn",
		}
		for _, sa := range SearchAttributes {
			args = append(args, "--search-attribute", sa)
		}
		for _, ns := range namespaces {
			args = append(args, "--namespace", ns)
		}
		tp.srv.args = args
		return tp.start(t)
	})
	return tp
}

// In returns the view of the server in namespace ns, one StartTemporal
// created: tests that share a server use one namespace each, so their
// jobs' ids (vault-gc, retention, ...) never meet.
func (tp *Temporal) In(ns string) *Temporal {
	v := *tp
	v.Namespace = ns
	return &v
}

// start runs the server and waits until it serves every namespace with
// vmvault's search attributes.
func (tp *Temporal) start(t testing.TB) error {
	tp.srv.proc = startProcess(t, "temporal", tp.srv.args, nil)
	return tp.srv.proc.awaitReady(90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := client.DialContext(ctx, tp.options())
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			return err
		}
		for _, ns := range tp.srv.namespaces {
			if _, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns}); err != nil {
				return fmt.Errorf("describe namespace %s: %w", ns, err)
			}
			if err := addSearchAttributes(ctx, c, ns); err != nil {
				return err
			}
		}
		return nil
	})
}

// addSearchAttributes registers vmvault's search attributes in ns where
// start-dev did not.
func addSearchAttributes(ctx context.Context, c client.Client, ns string) error {
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		return fmt.Errorf("list search attributes of %s: %w", ns, err)
	}
	missing := map[string]enums.IndexedValueType{}
	for _, n := range workflows.SearchAttributeNames {
		if _, ok := have.GetCustomAttributes()[n]; !ok {
			missing[n] = enums.INDEXED_VALUE_TYPE_KEYWORD
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns, SearchAttributes: missing})
	if err != nil {
		return fmt.Errorf("add search attributes to %s: %w", ns, err)
	}
	return errNotReady // listed again at the next check
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s). Clients and
// workers see it unreachable until Start.
func (tp *Temporal) Stop(t testing.TB) {
	t.Helper()
	tp.srv.proc.stop()
}

// Start starts a stopped server again on the same ports and SQLite file
// and waits until it serves: what it held before Stop is there again.
func (tp *Temporal) Start(t testing.TB) {
	t.Helper()
	if !tp.srv.proc.exited() {
		t.Fatal("temporal: Start while the server runs")
	}
	if err := tp.start(t); err != nil {
		t.Fatalf("temporal: start again on %s: %v", tp.HostPort, err)
	}
}

// Restart stops the server, leaves it down for down, and starts it again
// (see Stop and Start).
func (tp *Temporal) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	tp.Stop(t)
	time.Sleep(down)
	tp.Start(t)
}

func (tp *Temporal) options() client.Options {
	return client.Options{
		HostPort:  tp.HostPort,
		Namespace: tp.Namespace,
		// The SDK's default logger prints every connection at INFO; keep warnings.
		Logger: tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr,
			&slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
}

// Client returns a client of the server, closed when the test ends.
func (tp *Temporal) Client(t testing.TB) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, tp.options())
	if err != nil {
		t.Fatalf("dial temporal %s: %v", tp.HostPort, err)
	}
	t.Cleanup(c.Close)
	return c
}
