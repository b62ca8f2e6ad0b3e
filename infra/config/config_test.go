package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	t.Setenv("VMVAULT_DATA_DIR", "/srv/vmvault")
	c, err := Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Vault != "file:///srv/vmvault/vault" || c.ImagesRoot != "/srv/vmvault/vms" || c.TaskQueue != "vmvault" ||
		c.Host != "local" || c.TemporalAddress != "localhost:7233" || c.BackupTimeout.Hours() != 24 || c.CBTAuditRate != 0.005 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	if _, err := (Config{DataDir: dir}).Secret(); err == nil {
		t.Fatal("no key configured, yet a secret")
	}
	kf := filepath.Join(dir, "k")
	if err := os.WriteFile(kf, []byte("file key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := (Config{KeyFile: kf}).Secret(); err != nil || string(s) != "file key" {
		t.Fatalf("key file: %q %v", s, err)
	}
	if _, err := (Config{KeyFile: kf, Passphrase: "p"}).Secret(); err == nil {
		t.Fatal("both passphrase and key file accepted")
	}
	// The embedded default: DATA_DIR/vault.key.
	if err := os.WriteFile(filepath.Join(dir, "vault.key"), []byte("generated"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := (Config{DataDir: dir}).Secret(); err != nil || string(s) != "generated" {
		t.Fatalf("default key file: %q %v", s, err)
	}
	if s, _ := (Config{DataDir: dir, Passphrase: "explicit"}).Secret(); string(s) != "explicit" {
		t.Fatalf("passphrase does not win over the default key file: %q", s)
	}
}

// A bad variable is named as the operator set it, and limits that cannot
// mean anything are refused instead of reaching a job.
func TestBadVariables(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"VMVAULT_HEARTBEAT_TIMEOUT", "often", `VMVAULT_HEARTBEAT_TIMEOUT="often"`},
		{"VMVAULT_BACKUP_TIMEOUT", "-1h", "VMVAULT_BACKUP_TIMEOUT=-1h0m0s: want a positive duration"},
		{"VMVAULT_RESTORE_TIMEOUT", "0s", "VMVAULT_RESTORE_TIMEOUT=0s"},
		{"VMVAULT_MAX_PROTECTED_VMS", "-3", "VMVAULT_MAX_PROTECTED_VMS=-3: must not be negative"},
		{"VMVAULT_MAX_PROTECTED_VMS", "0", "VMVAULT_MAX_PROTECTED_VMS=0"},
		{"VMVAULT_READ_LIMIT_MIB", "-1", "VMVAULT_READ_LIMIT_MIB=-1"},
		{"VMVAULT_TRANSFER_WORKERS", "many", `VMVAULT_TRANSFER_WORKERS="many"`},
		{"VMVAULT_CBT_AUDIT_RATE", "1.5", "VMVAULT_CBT_AUDIT_RATE=1.5: want a fraction from 0 to 1"},
		{"VMVAULT_CBT_AUDIT_RATE", "-0.1", "VMVAULT_CBT_AUDIT_RATE=-0.1: want a fraction from 0 to 1"},
		{"VMVAULT_CBT_AUDIT_RATE", "NaN", "VMVAULT_CBT_AUDIT_RATE=NaN: want a fraction from 0 to 1"},
		{"VMVAULT_CBT_AUDIT_RATE", "half", `VMVAULT_CBT_AUDIT_RATE="half"`},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv("VMVAULT_DATA_DIR", "/srv/vmvault")
			t.Setenv(tc.name, tc.value)
			_, err := Load(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
