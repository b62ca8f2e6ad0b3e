// Command vmvault is the operator's CLI: it initialises vaults, lists VMs and
// recovery points, starts and watches backup and restore jobs, and reads job
// history from Temporal visibility. Configuration comes from VMVAULT_
// variables; flags override them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/infra/config"
)

const usage = `vmvault: self-hosted VM backup on Temporal

usage:
  vmvault vault init [--block-size BYTES] [--pack-size BYTES] [--compression s2|zstd|none] [--leaf-blocks N]
  vmvault vault stats [--json]
  vmvault vm list [--host NAME] [--json]
  vmvault backup VM [--host NAME] [--wait] [--keep-snapshot]
  vmvault restore RP (--new-vm NAME | --replace [--vm NAME] | --disks DIR) [--host NAME] [--wait]
  vmvault rp list [VM] [--json]
  vmvault job list [--vm VM] [--kind backup|restore] [--limit N] [--json]
  vmvault job show JOB [--json]

Every command takes --address, --namespace, --vault and --task-queue to
override VMVAULT_TEMPORAL_ADDRESS, VMVAULT_TEMPORAL_NAMESPACE, VMVAULT_VAULT
and VMVAULT_TASK_QUEUE.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "vmvault:", oneLine(err))
		}
		os.Exit(exitCode(err))
	}
}

// exitCode: 2 for usage errors, 1 for everything else.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg + " (see 'vmvault help')" }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

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
		msg = strings.TrimSuffix(msg, ": "+err.Error())
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

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(out, usage)
		if len(args) == 0 {
			return usagef("no command")
		}
		return nil
	}
	cfg, err := config.Load(ctx)
	if err != nil {
		return err
	}
	a := &app{cfg: cfg, out: out}
	cmd, rest := args[0], args[1:]
	if len(rest) > 0 && (cmd == "vault" || cmd == "vm" || cmd == "rp" || cmd == "job") {
		cmd += " " + rest[0]
		rest = rest[1:]
	}
	switch cmd {
	case "vault init":
		return a.vaultInit(ctx, rest)
	case "vault stats":
		return a.vaultStats(ctx, rest)
	case "vm list":
		return a.vmList(ctx, rest)
	case "backup":
		return a.backup(ctx, rest)
	case "restore":
		return a.restore(ctx, rest)
	case "rp list":
		return a.rpList(ctx, rest)
	case "job list":
		return a.jobList(ctx, rest)
	case "job show":
		return a.jobShow(ctx, rest)
	}
	return usagef("unknown command %q", strings.Join(args[:min(2, len(args))], " "))
}
