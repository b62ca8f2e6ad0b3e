package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/vmvault/vmvault/workflows"
)

// watch follows a job's progress query until it ends, drawing its progress
// on errOut, then returns its result.
func (a *app) watch(ctx context.Context, c client.Client, run client.WorkflowRun, result any) error {
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, result) }()
	view := newProgressView(a.errOut)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	began, hinted := time.Now(), false
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return fmt.Errorf("stopped watching job %s; it goes on (vmvault job show %s)", run.GetID(), run.GetID())
			}
			return err
		case <-tick.C:
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			p, err := queryProgress(qctx, c, run.GetID(), run.GetRunID())
			cancel()
			if err != nil {
				if !hinted && view.last == "" && time.Since(began) > 10*time.Second {
					hinted = true
					fmt.Fprintf(a.errOut, "no answer from job %s yet: is a worker serving task queue %s?\n", run.GetID(), a.cfg.TaskQueue)
				}
				continue
			}
			view.show(p, time.Now())
		}
	}
}

func queryProgress(ctx context.Context, c client.Client, id, runID string) (workflows.Progress, error) {
	var p workflows.Progress
	v, err := c.QueryWorkflow(ctx, id, runID, workflows.QueryProgress)
	if err != nil {
		return p, err
	}
	return p, v.Get(&p)
}

// progressView shows a job's progress. On a terminal it redraws in place a
// total line and one bar per disk. Anywhere else (a file, a pipe, a test) it
// logs the total line when the phase changes, or at most every 2 seconds
// when it changes, so logs stay short and parseable.
type progressView struct {
	w         io.Writer
	tty       *os.File // the terminal, or nil
	drawn     int      // lines of the last frame still on screen
	last      string
	lastPrint time.Time
}

func newProgressView(w io.Writer) *progressView {
	v := &progressView{w: w}
	if isTerminal(w) {
		v.tty = w.(*os.File)
	}
	return v
}

// isTerminal says whether w is a terminal; /dev/null, files, pipes and
// buffers are not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (v *progressView) show(p workflows.Progress, now time.Time) {
	line := progressLine(p)
	switch {
	case v.tty != nil:
		width, _, err := term.GetSize(int(v.tty.Fd()))
		if err != nil {
			width = 0
		}
		v.draw(append([]string{line}, diskLines(p)...), width)
	case line != v.last && now.Sub(v.lastPrint) > 2*time.Second || string(p.Phase) != phaseOf(v.last):
		fmt.Fprintln(v.w, line)
		v.lastPrint = now
	}
	v.last = line
}

// draw replaces the previous frame with lines. Lines are cut to the
// terminal's width (0: no cut) so none wraps and the count of lines to move
// up stays true.
func (v *progressView) draw(lines []string, width int) {
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dA", v.drawn) // up to the frame's first line
	}
	for _, l := range lines {
		if width > 0 && len(l) >= width {
			l = l[:width-1]
		}
		b.WriteString("\r\033[K" + l + "\n")
	}
	b.WriteString("\033[J") // clear what is left of a longer previous frame
	v.drawn = len(lines)
	io.WriteString(v.w, b.String())
}

func phaseOf(line string) string {
	if i := strings.IndexByte(line, ' '); i > 0 {
		return strings.Trim(line[:i], "[]")
	}
	return ""
}

// progressLine is the whole job on one line: phase, bar, bytes, rate, eta.
func progressLine(p workflows.Progress) string {
	var total, done, up int64
	var rate float64
	for _, d := range p.Disks {
		total += d.SizeBytes
		done += d.DoneBytes
		up += d.UploadedBytes
		if d.State == workflows.DiskRunning {
			rate += d.BytesPerS
		}
	}
	pct := percent(done, total)
	line := fmt.Sprintf("[%s] %s %5.1f%% %s/%s", p.Phase, bar(pct, 30), pct, size(done), size(total))
	if p.Kind == workflows.KindBackup {
		line += " uploaded " + size(up)
	}
	if rate > 0 {
		line += fmt.Sprintf(" %s/s", size(int64(rate)))
		if left := total - done; left > 0 {
			line += fmt.Sprintf(" eta %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	return line
}

// diskLines are one bar per disk, names and states aligned.
func diskLines(p workflows.Progress) []string {
	nameW, stateW := 0, 0
	for _, d := range p.Disks {
		nameW, stateW = max(nameW, len(d.Disk)), max(stateW, len(d.State))
	}
	lines := make([]string, 0, len(p.Disks))
	for _, d := range p.Disks {
		pct := percent(d.DoneBytes, d.SizeBytes)
		line := fmt.Sprintf("  %-*s %-*s %s %5.1f%% %s/%s", nameW, d.Disk, stateW, d.State, bar(pct, 20), pct, size(d.DoneBytes), size(d.SizeBytes))
		if p.Kind == workflows.KindBackup {
			line += " uploaded " + size(d.UploadedBytes)
		}
		if d.State == workflows.DiskRunning && d.BytesPerS > 0 {
			line += fmt.Sprintf(" %s/s", size(int64(d.BytesPerS)))
		}
		lines = append(lines, line)
	}
	return lines
}

func percent(done, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return 100 * float64(done) / float64(total)
}

func bar(pct float64, width int) string {
	n := min(max(int(pct/100*float64(width)), 0), width)
	return strings.Repeat("#", n) + strings.Repeat(".", width-n)
}
