package qemu_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/platform"
)

// A fleecing whose copy-before-write job stops mid-read (here another QMP
// client cancels it) lets the guest's later writes into the export: the
// read goes on without an error, and Verify at its end fails it, saying
// "fleecing stopped", instead of passing a non-point-in-time image. While
// the job runs, Verify passes.
func TestFleecingStoppedMidReadFailsVerify(t *testing.T) {
	v := newLiveVM(t)
	ctx := context.Background()
	s := v.snapshot(t, "s1")
	r, err := v.p.OpenDisk(ctx, s, "os")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 4096)
	if _, err := r.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, osData[:4096]) {
		t.Fatalf("first read: %v", err)
	}
	v.write(t, "os", 0x11, 0, 4096) // copied before it is written: the snapshot holds
	if err := r.Verify(ctx); err != nil {
		t.Fatalf("Verify with the fleecing alive: %v", err)
	}

	// A second QMP client cancels the fleecing jobs mid-read.
	var jobs []struct {
		Device string `json:"device"`
	}
	v.exec(t, "query-block-jobs", nil, &jobs)
	for _, j := range jobs {
		if strings.HasPrefix(j.Device, "vvj-") {
			v.exec(t, "block-job-cancel", map[string]any{"device": j.Device, "force": true}, nil)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		v.exec(t, "query-block-jobs", nil, &jobs)
		if len(jobs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still there after the cancel: %v", jobs)
		}
	}
	v.write(t, "os", 0x22, 2*mib, 4096) // nothing copies it now (far from the cluster copied above)
	if _, err := r.ReadAt(buf, 2*mib); err != nil {
		t.Fatalf("read after the cancel: %v", err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0x22}, 4096)) {
		t.Fatal("the export does not show the write made after the cancel: the test breaks nothing")
	}
	err = r.Verify(ctx)
	if err == nil || !strings.Contains(err.Error(), "fleecing stopped") || !errors.Is(err, platform.ErrDiskChanged) {
		t.Fatalf("Verify after the fleecing stopped: %v, want \"fleecing stopped\" wrapping ErrDiskChanged (no retry on the same snapshot)", err)
	}
	t.Log(err)
	if err := v.p.DeleteSnapshot(ctx, s); err != nil {
		t.Fatalf("DeleteSnapshot after the fleecing stopped: %v", err)
	}
	if left := v.leftovers(t); len(left) > 0 {
		t.Errorf("left after DeleteSnapshot: %v", left)
	}
}
