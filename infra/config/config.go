// Package config is vmvault's configuration: every setting comes from a
// VMVAULT_ environment variable (github.com/sethvargo/go-envconfig) with an
// embedded default that runs everything on one machine; the CLI and the
// worker let flags override it. It only reads settings: what they name is
// opened by the composition root (infra/wire).
package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Config is the whole configuration. Field tags name the variables.
type Config struct {
	// TemporalAddress is the Temporal frontend, host:port.
	TemporalAddress string `env:"VMVAULT_TEMPORAL_ADDRESS, default=localhost:7233"`
	Namespace       string `env:"VMVAULT_TEMPORAL_NAMESPACE, default=default"`
	// TLS for a Temporal cluster or Temporal Cloud (mTLS): client cert and
	// key, and the CA that signed the server's cert (empty: system roots).
	TLSCert       string `env:"VMVAULT_TEMPORAL_TLS_CERT"`
	TLSKey        string `env:"VMVAULT_TEMPORAL_TLS_KEY"`
	TLSCA         string `env:"VMVAULT_TEMPORAL_TLS_CA"`
	TLSServerName string `env:"VMVAULT_TEMPORAL_TLS_SERVER_NAME"`
	// TaskQueue is the central queue: workflows and vault-only activities.
	TaskQueue string `env:"VMVAULT_TASK_QUEUE, default=vmvault"`
	// Host names this hypervisor host; its queue is vmvault-host-<Host>.
	Host string `env:"VMVAULT_HOST, default=local"`
	// Platform is where VMs live, a name registered in infra/wire: "images"
	// or "qemu".
	Platform string `env:"VMVAULT_PLATFORM, default=images"`
	// DataDir holds the embedded defaults' vault and VM images.
	DataDir string `env:"VMVAULT_DATA_DIR"`
	// ImagesRoot is the images platform's folder of VMs (default DataDir/vms).
	ImagesRoot string `env:"VMVAULT_IMAGES_ROOT"`
	// QEMUInventory is the qemu platform's folder of VM definitions, one
	// folder per VM with vm.json and qemu.json (default DataDir/qemu).
	QEMUInventory string `env:"VMVAULT_QEMU_INVENTORY"`
	// Vault is file:///path or s3://bucket/prefix (default file://DataDir/vault).
	Vault string `env:"VMVAULT_VAULT"`
	// The vault key: a passphrase, or a file whose content is the key.
	Passphrase string `env:"VMVAULT_VAULT_PASSPHRASE"`
	KeyFile    string `env:"VMVAULT_VAULT_KEY_FILE"`
	// NewPassphrase is the new vault key for 'vmvault vault passwd' (or
	// --new-key-file there).
	NewPassphrase string `env:"VMVAULT_NEW_VAULT_PASSPHRASE"`
	// S3 settings; credentials come from the AWS SDK's default chain
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
	// AWS_PROFILE and the shared files, web identity, instance roles).
	S3Endpoint  string `env:"VMVAULT_S3_ENDPOINT"`
	S3Region    string `env:"VMVAULT_S3_REGION, default=us-east-1"`
	S3PathStyle bool   `env:"VMVAULT_S3_PATH_STYLE, default=false"`
	// SecondaryVault is the vault's secondary location (file:///path or
	// s3://bucket/prefix): 'vmvault vault replicate' and every backup copy
	// the vault there; empty means none. Its S3 settings default to the
	// primary's; its credentials are SecondaryAccessKeyID and
	// SecondarySecretAccessKey when set, else the AWS default chain.
	SecondaryVault           string `env:"VMVAULT_SECONDARY_VAULT"`
	SecondaryS3Endpoint      string `env:"VMVAULT_SECONDARY_S3_ENDPOINT"`
	SecondaryS3Region        string `env:"VMVAULT_SECONDARY_S3_REGION"`
	SecondaryS3PathStyle     *bool  `env:"VMVAULT_SECONDARY_S3_PATH_STYLE"`
	SecondaryAccessKeyID     string `env:"VMVAULT_SECONDARY_AWS_ACCESS_KEY_ID"`
	SecondarySecretAccessKey string `env:"VMVAULT_SECONDARY_AWS_SECRET_ACCESS_KEY"`
	// ReplicationLimitMiB caps replication's copy rate in MiB/s (0: no cap).
	ReplicationLimitMiB int64 `env:"VMVAULT_REPLICATION_LIMIT_MIB, default=0"`
	// BackupTimeout bounds a whole backup job.
	BackupTimeout time.Duration `env:"VMVAULT_BACKUP_TIMEOUT, default=24h"`
	// RestoreTimeout bounds a whole restore job.
	RestoreTimeout time.Duration `env:"VMVAULT_RESTORE_TIMEOUT, default=24h"`
	// SoftDeleteDays is how long a deleted recovery point (by 'vmvault rp
	// delete' or by retention) can be undeleted before it is purged and its
	// data left to garbage collection: Azure's 14 days by default.
	SoftDeleteDays int `env:"VMVAULT_SOFT_DELETE_DAYS, default=14"`
	// HeartbeatTimeout: a disk transfer that has not reported for this long
	// is retried (on another worker of the same host queue, or after restart).
	HeartbeatTimeout time.Duration `env:"VMVAULT_HEARTBEAT_TIMEOUT, default=2m"`
	// TransferWorkers bounds the cores one disk transfer uses on a host
	// (0: all cores), to leave CPU to the VMs.
	TransferWorkers int `env:"VMVAULT_TRANSFER_WORKERS, default=0"`
	// ReadLimitMiB caps each disk transfer's read rate in MiB/s (0: no cap),
	// to spare the storage the VMs run on.
	ReadLimitMiB int64 `env:"VMVAULT_READ_LIMIT_MIB, default=0"`
	// CBTAuditRate is the fraction of the blocks outside the changed extents
	// that each CBT incremental reads and compares with the parent, to catch
	// changes the platform's tracking missed (0 audits nothing; see
	// infra/vault/backup/audit.go).
	CBTAuditRate float64 `env:"VMVAULT_CBT_AUDIT_RATE, default=0.005"`
	// MaxProtectedVMs is how many VMs one vault protects at most ('vmvault
	// protect' refuses more): Azure's limit of 1000 VMs per vault, which also
	// bounds the schedules one 'policy update' rewrites.
	MaxProtectedVMs int `env:"VMVAULT_MAX_PROTECTED_VMS, default=1000"`
	// GCGrace is the time between a GC's mark and its sweep: longer than
	// any backup job runs (BackupTimeout), so no running backup can still
	// reference a pack the sweep deletes. GC refuses a grace that is not
	// longer than the limit of a running backup (activities.CheckGCGrace).
	GCGrace time.Duration `env:"VMVAULT_GC_GRACE, default=25h"`
	// IndexDir holds each worker's vault index on local disk (run files,
	// deleted as they are opened, so nothing is left behind; about 48 bytes
	// per stored block). Default: the user's cache directory. Not on a tmpfs:
	// that would put the index back in memory.
	IndexDir string `env:"VMVAULT_INDEX_DIR"`
	// IndexReconcile is how often a worker checks its index against a full
	// listing of the vault (every refresh in between lists only what is new).
	IndexReconcile time.Duration `env:"VMVAULT_INDEX_RECONCILE, default=1h"`
}

// Load reads the environment and fills in defaults.
func Load(ctx context.Context) (Config, error) {
	var c Config
	if err := envconfig.Process(ctx, &c); err != nil {
		return c, fmt.Errorf("configuration: %w", nameVariable(err))
	}
	if c.DataDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("configuration: VMVAULT_DATA_DIR is unset and there is no home directory: %w", err)
		}
		c.DataDir = filepath.Join(home, ".local", "share", "vmvault")
	}
	if c.ImagesRoot == "" {
		c.ImagesRoot = filepath.Join(c.DataDir, "vms")
	}
	if c.QEMUInventory == "" {
		c.QEMUInventory = filepath.Join(c.DataDir, "qemu")
	}
	if c.Vault == "" {
		c.Vault = "file://" + filepath.Join(c.DataDir, "vault")
	}
	if c.SoftDeleteDays < 1 {
		return c, fmt.Errorf("configuration: VMVAULT_SOFT_DELETE_DAYS=%d: want at least 1 day", c.SoftDeleteDays)
	}
	return c, c.checkBounds()
}

// checkBounds refuses limits that cannot mean anything: a job limit or an
// interval that is not positive, a count or a rate that is negative. Each
// would otherwise reach a workflow as "no limit" or as a limit already past.
func (c Config) checkBounds() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"VMVAULT_BACKUP_TIMEOUT", c.BackupTimeout}, {"VMVAULT_RESTORE_TIMEOUT", c.RestoreTimeout},
		{"VMVAULT_HEARTBEAT_TIMEOUT", c.HeartbeatTimeout}, {"VMVAULT_GC_GRACE", c.GCGrace},
		{"VMVAULT_INDEX_RECONCILE", c.IndexReconcile},
	} {
		if d.v <= 0 {
			return fmt.Errorf("configuration: %s=%s: want a positive duration", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"VMVAULT_MAX_PROTECTED_VMS", int64(c.MaxProtectedVMs)}, {"VMVAULT_TRANSFER_WORKERS", int64(c.TransferWorkers)},
		{"VMVAULT_READ_LIMIT_MIB", c.ReadLimitMiB}, {"VMVAULT_REPLICATION_LIMIT_MIB", c.ReplicationLimitMiB},
	} {
		if n.v < 0 {
			return fmt.Errorf("configuration: %s=%d: must not be negative", n.name, n.v)
		}
	}
	if !(c.CBTAuditRate >= 0 && c.CBTAuditRate <= 1) { // NaN too
		return fmt.Errorf("configuration: VMVAULT_CBT_AUDIT_RATE=%v: want a fraction from 0 to 1", c.CBTAuditRate)
	}
	if c.MaxProtectedVMs == 0 {
		return errors.New("configuration: VMVAULT_MAX_PROTECTED_VMS=0: want at least 1")
	}
	return nil
}

// nameVariable turns envconfig's "HeartbeatTimeout: time: invalid
// duration" into "VMVAULT_HEARTBEAT_TIMEOUT: ...": the operator sets
// variables, not Go fields.
func nameVariable(err error) error {
	msg := err.Error()
	field, rest, ok := strings.Cut(msg, ": ")
	if !ok {
		return err
	}
	f, ok := reflect.TypeFor[Config]().FieldByName(field)
	if !ok {
		return err
	}
	name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	if name == "" {
		return err
	}
	return fmt.Errorf("%s=%q: %s", name, os.Getenv(name), rest)
}

// SoftDeletePeriod is SoftDeleteDays as a duration.
func (c Config) SoftDeletePeriod() time.Duration {
	return time.Duration(c.SoftDeleteDays) * 24 * time.Hour
}

// Secret returns the vault key from the passphrase or the key file.
func (c Config) Secret() ([]byte, error) {
	switch {
	case c.Passphrase != "" && c.KeyFile != "":
		return nil, errors.New("set only one of VMVAULT_VAULT_PASSPHRASE and VMVAULT_VAULT_KEY_FILE")
	case c.Passphrase != "":
		return []byte(c.Passphrase), nil
	case c.KeyFile != "":
		b, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("vault key file: %w", err)
		}
		b = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(b) == 0 {
			return nil, fmt.Errorf("vault key file %s is empty", c.KeyFile)
		}
		return b, nil
	}
	if def := filepath.Join(c.DataDir, "vault.key"); fileExists(def) {
		// The embedded default (make up) keeps a generated key beside the data.
		return Config{KeyFile: def}.Secret()
	}
	return nil, errors.New("no vault key: set VMVAULT_VAULT_PASSPHRASE or VMVAULT_VAULT_KEY_FILE")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
