package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/infra/vault"
)

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) table(header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// warnCorrupt turns unreadable recovery points into warnings when the others
// could be read, so one bad manifest does not hide a VM's history.
func (a *app) warnCorrupt(err error) error {
	if err == nil || !errors.Is(err, vault.ErrCorrupt) {
		return err
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(a.errOut, "warning:", line)
	}
	return nil
}

// oneLine reduces an error to one line: for a failed job, the innermost
// application error with its type.
func oneLine(err error) string {
	var app *temporal.ApplicationError
	msg := err.Error()
	if errors.As(err, &app) {
		inner := app
		for {
			var next *temporal.ApplicationError
			if u := errors.Unwrap(inner); u == nil || !errors.As(u, &next) {
				break
			}
			inner = next
		}
		if inner.Type() != "" {
			msg = fmt.Sprintf("%s (%s)", inner.Message(), inner.Type())
		} else {
			msg = inner.Message()
		}
		var prefix jobError
		if errors.As(err, &prefix) {
			msg = prefix.what + ": " + msg
		}
	}
	return strings.ReplaceAll(msg, "\n", "; ")
}

// jobError names the job that failed.
type jobError struct {
	what string
	err  error
}

func (e jobError) Error() string { return e.what + ": " + e.err.Error() }

func (e jobError) Unwrap() error { return e.err }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// size formats bytes in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// started reports a job started without --wait.
func (a *app) started(kind string, run client.WorkflowRun) error {
	if a.json {
		return a.printJSON(map[string]string{"job": run.GetID(), "run": run.GetRunID()})
	}
	fmt.Fprintf(a.out, "started %s job %s (run %s)\n", kind, run.GetID(), run.GetRunID())
	return nil
}
