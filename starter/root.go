// Command vmvault is the operator's CLI: it initialises vaults, lists VMs and
// recovery points, starts and watches backup and restore jobs, and reads job
// history from Temporal visibility. Configuration comes from VMVAULT_
// variables; flags override them.
package main

import (
	_ "time/tzdata" // policies name IANA time zones; hosts without zone files still read them

	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&app{out: os.Stdout, errOut: os.Stderr}).execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is what every command shares: the writers all output goes through,
// the configuration, and the Temporal client once dialled.
type app struct {
	out, errOut io.Writer
	cfg         config.Config
	client      client.Client
	json        bool
	// fromSecondary: read commands open the vault's secondary copy.
	fromSecondary bool
	global        globalFlags
	// ran is set once a command's own code starts: an error before that is
	// cobra refusing the command line, a usage error.
	ran bool
}

// globalFlags override the VMVAULT_ variables for every command.
type globalFlags struct {
	address, namespace, vault, taskQueue string
}

// execute runs one command line and returns the exit code: 0, 1 for a
// failure, 2 for a usage error. Errors are printed as one line on errOut.
func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if a.client != nil {
		a.client.Close()
	}
	if err == nil {
		return 0
	}
	fmt.Fprintln(a.errOut, "vmvault:", oneLine(err))
	var u usageError
	if errors.As(err, &u) || !a.ran {
		return 2
	}
	return 1
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vmvault",
		Short: "Self-hosted VM backup on Temporal",
		Long: `vmvault: self-hosted VM backup on Temporal.

Every setting comes from a VMVAULT_ variable (see README.md); --address,
--namespace, --vault and --task-queue override VMVAULT_TEMPORAL_ADDRESS,
VMVAULT_TEMPORAL_NAMESPACE, VMVAULT_VAULT and VMVAULT_TASK_QUEUE.
Run 'vmvault help COMMAND' for a command's flags and examples.`,
		Example: `  vmvault vault init
  vmvault backup web01 --wait
  vmvault rp list web01
  vmvault restore web01/20261121T233345Z-9f6fd2 --new-vm web01-restored --wait`,
		SilenceErrors:         true,
		SilenceUsage:          true,
		DisableFlagsInUseLine: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return usagef(cmd, "no command")
		},
	}
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef(cmd, "%s: %v", commandName(cmd), err)
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.global.address, "address", "", "Temporal frontend host:port (default $VMVAULT_TEMPORAL_ADDRESS, localhost:7233)")
	pf.StringVar(&a.global.namespace, "namespace", "", "Temporal namespace (default $VMVAULT_TEMPORAL_NAMESPACE, default)")
	pf.StringVar(&a.global.vault, "vault", "", "vault URL, file:///path or s3://bucket/prefix (default $VMVAULT_VAULT)")
	pf.StringVar(&a.global.taskQueue, "task-queue", "", "central task queue (default $VMVAULT_TASK_QUEUE, vmvault)")
	root.AddCommand(a.vaultCmd(), a.vmCmd(), a.backupCmd(), a.restoreCmd(), a.rpCmd(), a.jobCmd(),
		a.policyCmd(), a.protectCmd(), a.unprotectCmd(), a.protectedCmd())
	root.AddCommand(a.retentionCmd())
	// cobra's completion command only prints its help for a shell it does
	// not know; make that a usage error like any unknown command.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Args, c.RunE = cobra.ArbitraryArgs, groupRun
		}
	}
	return root
}

// run wraps a command's code: it loads the configuration, applies the
// global flags, and marks the command line as accepted.
func (a *app) run(fn func(ctx context.Context, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.ran = true
		cfg, err := config.Load(cmd.Context())
		if err != nil {
			return err
		}
		for _, o := range []struct {
			flag     string
			val, dst *string
		}{
			{"address", &a.global.address, &cfg.TemporalAddress},
			{"namespace", &a.global.namespace, &cfg.Namespace},
			{"vault", &a.global.vault, &cfg.Vault},
			{"task-queue", &a.global.taskQueue, &cfg.TaskQueue},
		} {
			if cmd.Flags().Changed(o.flag) {
				*o.dst = *o.val
			}
		}
		a.cfg = cfg
		return fn(cmd.Context(), cmd, args)
	}
}

// group is a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:                   use,
		Short:                 short,
		Args:                  cobra.ArbitraryArgs,
		RunE:                  groupRun,
		DisableFlagsInUseLine: true,
	}
	g.AddCommand(subs...)
	return g
}

// groupRun runs when no subcommand of a group matched.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usagef(cmd, "%s needs a command", commandName(cmd))
	}
	return unknownCommand(cmd, args)
}

// jsonFlag adds --json, which every command takes.
func (a *app) jsonFlag(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().BoolVar(&a.json, "json", false, "print JSON")
	return cmd
}

func (a *app) dial() (client.Client, error) {
	if a.client == nil {
		c, err := wire.Dial(a.cfg, nil)
		if err != nil {
			return nil, err
		}
		a.client = c
	}
	return a.client, nil
}

// usageError is a command line vmvault cannot run; it exits 2.
type usageError struct{ msg, help string }

func (u usageError) Error() string { return fmt.Sprintf("%s (see '%s')", u.msg, u.help) }

func usagef(cmd *cobra.Command, format string, a ...any) error {
	help := "vmvault help"
	if name := commandName(cmd); name != "" {
		help += " " + name
	}
	return usageError{msg: fmt.Sprintf(format, a...), help: help}
}

func unknownCommand(cmd *cobra.Command, args []string) error {
	name := strings.TrimSpace(commandName(cmd) + " " + args[0])
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return usagef(cmd, "unknown command %q; did you mean %q?", name, strings.TrimSpace(commandName(cmd)+" "+s[0]))
	}
	return usagef(cmd, "unknown command %q", name)
}

// commandName is the command's path without the binary: "vm list".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()), " ")
}

// noArgs, oneArg and maxOneArg check positional arguments with vmvault's
// own messages.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 0 {
		return usagef(cmd, "%s takes no arguments", commandName(cmd))
	}
	return nil
}

func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef(cmd, "%s takes %s", commandName(cmd), what)
		}
		return nil
	}
}

func maxOneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 1 {
			return usagef(cmd, "%s takes at most %s", commandName(cmd), what)
		}
		return nil
	}
}
