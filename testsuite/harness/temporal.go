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

// Temporal is a running Temporal dev server owned by one test.
type Temporal struct {
	HostPort  string // frontend gRPC, "127.0.0.1:port"
	Namespace string // "default", which start-dev always creates
}

// StartTemporal starts `bin/temporal server start-dev` on free ports with a
// fresh SQLite file and vmvault's search attributes, waits until a client
// can connect, and stops it when the test ends.
func StartTemporal(t testing.TB) *Temporal {
	t.Helper()
	tp := &Temporal{Namespace: "default"}
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
		p := startProcess(t, "temporal", args, nil)
		return p.awaitReady(90*time.Second, func() error {
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
			_, err = c.WorkflowService().DescribeNamespace(ctx,
				&workflowservice.DescribeNamespaceRequest{Namespace: tp.Namespace})
			if err != nil {
				return fmt.Errorf("describe namespace %s: %w", tp.Namespace, err)
			}
			return nil
		})
	})
	return tp
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
