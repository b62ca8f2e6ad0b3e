package activities

import (
	"context"
	"sync/atomic"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/vmvault/vmvault/infra/platform"
)

// quickPlatform answers the short host steps at once; anything else panics.
type quickPlatform struct{ platform.Platform }

func (quickPlatform) DescribeVM(context.Context, string) (platform.VM, error) {
	return platform.VM{Name: "vm1", Extension: platform.ExtensionStatus{Installed: true, Healthy: true}}, nil
}
func (quickPlatform) DeleteSnapshot(context.Context, platform.Snapshot) error { return nil }
func (quickPlatform) CommitChanges(context.Context, platform.Snapshot) error  { return nil }

// Short host steps heartbeat (the workflows give them a 30s heartbeat
// timeout), so a host agent killed while holding one is noticed within a
// minute instead of after the step's five-minute start-to-close timeout.
func TestShortHostStepsHeartbeat(t *testing.T) {
	h := &HostActivities{Platform: quickPlatform{}}
	steps := map[string]func(env *testsuite.TestActivityEnvironment) error{
		"DescribeVM": func(env *testsuite.TestActivityEnvironment) error {
			_, err := env.ExecuteActivity(h.DescribeVM, VMInput{VM: "vm1"})
			return err
		},
		"EnsureExtension": func(env *testsuite.TestActivityEnvironment) error {
			_, err := env.ExecuteActivity(h.EnsureExtension, VMInput{VM: "vm1"})
			return err
		},
		"DeleteSnapshot": func(env *testsuite.TestActivityEnvironment) error {
			_, err := env.ExecuteActivity(h.DeleteSnapshot, platform.Snapshot{ID: "s1", VM: "vm1"})
			return err
		},
		"CommitChanges": func(env *testsuite.TestActivityEnvironment) error {
			_, err := env.ExecuteActivity(h.CommitChanges, platform.Snapshot{ID: "s1", VM: "vm1"})
			return err
		},
	}
	for name, run := range steps {
		t.Run(name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			env.RegisterActivity(h)
			var beats atomic.Int32
			env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { beats.Add(1) })
			if err := run(env); err != nil {
				t.Fatal(err)
			}
			if beats.Load() == 0 {
				t.Fatalf("%s never heartbeats", name)
			}
		})
	}
}
