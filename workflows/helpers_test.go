package workflows

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

var testPin = activities.VaultPin{ID: "vault-1", Location: "file:///vault"}

const (
	testVM   = "web1"
	testHost = "hv1"
	gib      = int64(1) << 30
)

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.HostActivities{})
	env.RegisterActivity(&activities.VaultActivities{})
	return env
}

// never mocks an activity that must not run: a call panics inside the
// activity and is recorded, so assertNotCalled catches it.
func never(env *testsuite.TestWorkflowEnvironment, activity any) {
	env.OnActivity(activity, mock.Anything, mock.Anything).Never()
}

func assertNotCalled(t *testing.T, env *testsuite.TestWorkflowEnvironment, names ...string) {
	t.Helper()
	for _, n := range names {
		env.AssertActivityNumberOfCalls(t, n, 0)
	}
}

// testDisks: an OS disk, a data disk and a temp disk (never backed up).
func testDisks() []platform.Disk {
	return []platform.Disk{
		{Name: "os", Role: platform.DiskOS, File: "os.qcow2", Format: "qcow2", SizeBytes: 64 * gib},
		{Name: "data0", Role: platform.DiskData, LUN: 3, File: "data0.raw", SizeBytes: 128 * gib},
		{Name: "temp", Role: platform.DiskTemp, File: "temp.raw", SizeBytes: 16 * gib},
	}
}

func testVMWith(power platform.PowerState) platform.VM {
	return platform.VM{Name: testVM, OS: platform.OSLinux, CPUs: 2, MemoryMB: 4096, Power: power, Disks: testDisks()}
}

func rootOf(s string) vault.ID {
	var id vault.ID
	copy(id[:], s)
	return id
}

// xferResult is what the mocked TransferDisk returns for a disk: values
// derived from the name so each disk's record can be told apart.
func xferResult(disk string) activities.TransferDiskResult {
	n := int64(len(disk))
	return activities.TransferDiskResult{Disk: disk, Result: vault.DiskResult{
		Root: rootOf("root-" + disk), Size: n * gib, Method: "checksum",
		Stats: vault.DiskStats{ScannedBytes: n * 1000, DataBytes: n * 900, ChangedBytes: n * 800, NewBytes: n * 700, StoredBytes: n * 600, NewBlocks: n, Packs: 1},
	}, Notes: []string{"note " + disk}}
}

// recorder collects activity inputs; activities run on their own goroutines.
type recorder[T any] struct {
	mu  sync.Mutex
	ins []T
}

func (r *recorder[T]) add(in T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ins = append(r.ins, in)
}

func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.ins...)
}

func requireAppErrType(t *testing.T, err error, typ string) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var app *temporal.ApplicationError
	require.True(t, errors.As(err, &app), "want an application error, got %T: %v", err, err)
	require.Equal(t, typ, app.Type(), "error: %v", err)
	return app
}
