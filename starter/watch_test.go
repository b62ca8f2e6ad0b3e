package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/workflows"
)

func TestIsTerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, w := range map[string]io.Writer{"buffer": &bytes.Buffer{}, "/dev/null": devNull, "file": file} {
		if isTerminal(w) {
			t.Errorf("%s taken for a terminal", name)
		}
	}
	if v := newProgressView(devNull); v.tty != nil {
		t.Error("progress view on /dev/null draws bars")
	}
}

func disk(name, state string, size, done, up int64, rate float64) workflows.DiskStatus {
	return workflows.DiskStatus{State: workflows.DiskState(state), DiskProgress: activities.DiskProgress{Disk: name, SizeBytes: size, DoneBytes: done, UploadedBytes: up, BytesPerS: rate}}
}

var sample = workflows.Progress{Kind: workflows.KindBackup, VM: "web01", Phase: "transfer", Disks: []workflows.DiskStatus{
	disk("os", "done", 256<<20, 256<<20, 40<<20, 0),
	disk("data0", "running", 512<<20, 128<<20, 1<<20, 64<<20),
}}

func TestProgressLine(t *testing.T) {
	want := "[transfer] ###############...............  50.0% 384.0 MiB/768.0 MiB uploaded 41.0 MiB 64.0 MiB/s eta 6s"
	if got := progressLine(sample); got != want {
		t.Errorf("progressLine =\n%q, want\n%q", got, want)
	}
	restore := workflows.Progress{Kind: workflows.KindRestore, Phase: "done", Disks: []workflows.DiskStatus{disk("os", "done", 1024, 1024, 0, 0)}}
	if got, want := progressLine(restore), "[done] ############################## 100.0% 1.0 KiB/1.0 KiB"; got != want {
		t.Errorf("restore progressLine = %q, want %q", got, want)
	}
}

func TestDiskLines(t *testing.T) {
	want := []string{
		"  os    done    #################### 100.0% 256.0 MiB/256.0 MiB uploaded 40.0 MiB",
		"  data0 running #####...............  25.0% 128.0 MiB/512.0 MiB uploaded 1.0 MiB 64.0 MiB/s",
	}
	got := diskLines(sample)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diskLines =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTerminalFrameRedrawsInPlace(t *testing.T) {
	var b bytes.Buffer
	v := &progressView{w: &b}
	v.draw([]string{"total", "  os", "  data0"}, 0)
	if got, want := b.String(), "\r\033[Ktotal\n\r\033[K  os\n\r\033[K  data0\n\033[J"; got != want {
		t.Fatalf("first frame %q, want %q", got, want)
	}
	b.Reset()
	v.draw([]string{"a long total line", "x"}, 10)
	if got, want := b.String(), "\033[3A\r\033[Ka long to\n\r\033[Kx\n\033[J"; got != want {
		t.Errorf("second frame %q, want %q (up 3 lines, cut to the width, clear the rest)", got, want)
	}
}

// Off a terminal progress is a log: a line when the phase changes, else at
// most one every 2 seconds, and only when it changed.
func TestLogThrottles(t *testing.T) {
	var b bytes.Buffer
	v := newProgressView(&b)
	t0 := time.Unix(1000, 0)
	p := sample
	v.show(p, t0)
	v.show(p, t0.Add(3*time.Second)) // unchanged
	p.Disks = []workflows.DiskStatus{sample.Disks[0], disk("data0", "running", 512<<20, 256<<20, 1<<20, 64<<20)}
	v.show(p, t0.Add(3500*time.Millisecond)) // changed, 3.5s after the last print
	p.Disks[1].DoneBytes += 1 << 20
	v.show(p, t0.Add(4*time.Second)) // changed, but 0.5s after the last print
	p.Phase = "commit"
	v.show(p, t0.Add(4100*time.Millisecond)) // new phase: at once
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "66.7%") || !strings.HasPrefix(lines[2], "[commit]") || strings.Contains(b.String(), "\033") {
		t.Errorf("log:\n%s", b.String())
	}
}
