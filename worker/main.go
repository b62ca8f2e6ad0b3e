// Command worker runs vmvault's Temporal workers: the central queue
// (workflows and vault-only activities) and the queue of this hypervisor
// host (disk and platform activities). By default it serves both, which is
// the embedded single-machine setup; --host NAME serves only that host's
// queue (a host agent), --central only the central queue.
package main

import (
	_ "time/tzdata" // policies name IANA time zones; hosts without zone files still read them

	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/vmvault/vmvault/activities"
	"github.com/vmvault/vmvault/infra/config"
	"github.com/vmvault/vmvault/infra/faultpoint"
	"github.com/vmvault/vmvault/infra/wire"
	"github.com/vmvault/vmvault/workflows"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(ctx)
	if err != nil {
		return err
	}
	host := flag.String("host", "", "serve only the queue of this host (a host agent); default: the central queue and VMVAULT_HOST's queue")
	central := flag.Bool("central", false, "serve only the central queue")
	flag.Parse()
	serveCentral, serveHost := true, true
	switch {
	case *host != "" && *central:
		return fmt.Errorf("--host and --central exclude each other")
	case *host != "":
		cfg.Host, serveCentral = *host, false
	case *central:
		serveHost = false
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if faultpoint.Armed() {
		logger.Warn("fault points armed: this worker kills itself at them (tests only)", faultpoint.Env, os.Getenv(faultpoint.Env))
	}
	v, err := wire.OpenVault(ctx, cfg)
	if err != nil {
		return err
	}
	c, err := wire.Dial(cfg, logger)
	if err != nil {
		return err
	}
	defer c.Close()

	sec, err := secondary(ctx, cfg)
	if err != nil {
		return err
	}

	var workers []worker.Worker
	if serveCentral {
		w := worker.New(c, cfg.TaskQueue, worker.Options{})
		workflows.RegisterCentral(w, &activities.VaultActivities{Vault: v, Secondary: sec, Starter: c, Jobs: c},
			&activities.ProtectionActivities{Vault: v, Schedules: c.ScheduleClient()})
		workers = append(workers, w)
	}
	if serveHost {
		p, err := wire.OpenPlatform(ctx, cfg)
		if err != nil {
			return err
		}
		host := &activities.HostActivities{Platform: p, Vault: v, Secondary: sec, Signaler: c, TransferWorkers: cfg.TransferWorkers, ReadLimit: cfg.ReadLimitMiB << 20, CBTAuditRate: cfg.CBTAuditRate}
		workers = append(workers, hostWorkers(c, cfg.Host, func(r workflows.ActivityRegistry) { workflows.RegisterHost(r, host) })...)
	}
	for _, w := range workers {
		if err := w.Start(); err != nil {
			return err
		}
		defer w.Stop()
	}
	logger.Info("worker started", "temporal", cfg.TemporalAddress, "namespace", cfg.Namespace,
		"central", serveCentral, "queue", cfg.TaskQueue, "host", serveHost, "host_queue", activities.HostQueue(cfg.Host), "transfer_queue", activities.TransferQueue(cfg.Host),
		"vault", v.Location(), "vault_id", v.Config().ID, "secondary", cfg.SecondaryVault, "platform", cfg.Platform)
	<-ctx.Done()
	logger.Info("worker stopping")
	return nil
}

// Slots of a host's two queues. Disk transfers use every core themselves; a
// few at a time is plenty. Short steps are light, and must never wait for a
// transfer's slot.
const (
	transferSlots = 8
	hostStepSlots = 16
)

// hostWorkers serves a host's two queues, each with its own slots: short
// platform steps on HostQueue, long disk work on TransferQueue. Both
// register every host activity: jobs started before the transfer queue
// existed still send their transfers to the host queue.
func hostWorkers(c client.Client, host string, register func(workflows.ActivityRegistry)) []worker.Worker {
	steps := worker.New(c, activities.HostQueue(host), worker.Options{MaxConcurrentActivityExecutionSize: hostStepSlots})
	transfers := worker.New(c, activities.TransferQueue(host), worker.Options{MaxConcurrentActivityExecutionSize: transferSlots})
	register(steps)
	register(transfers)
	return []worker.Worker{steps, transfers}
}

// secondary opens the vault's secondary location, if one is configured. It
// is not contacted yet: replication creates it, restores read it.
func secondary(ctx context.Context, cfg config.Config) (*activities.Secondary, error) {
	if cfg.SecondaryVault == "" {
		return nil, nil
	}
	be, err := wire.OpenSecondaryStorage(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &activities.Secondary{Storage: be, DeleteAfter: cfg.SoftDeletePeriod(), Limit: cfg.ReplicationLimitMiB << 20}, nil
}
