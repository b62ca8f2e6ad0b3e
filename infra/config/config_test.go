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
		c.Host != "local" || c.TemporalAddress != "localhost:7233" || c.BackupTimeout.Hours() != 24 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestS3URL(t *testing.T) {
	c := Config{Vault: "s3://backups/site-a/vault", S3Endpoint: "http://127.0.0.1:9000", S3PathStyle: true, S3Region: "eu-1"}
	s := c.S3()
	if s.Bucket != "backups" || s.Prefix != "site-a/vault" || s.Endpoint != c.S3Endpoint || !s.PathStyle || s.Region != "eu-1" {
		t.Fatalf("s3 config: %+v", s)
	}
}

func TestStorageURLs(t *testing.T) {
	dir := t.TempDir()
	be, err := Config{Vault: "file://" + dir}.Storage(context.Background())
	if err != nil || be.Location() != "file://"+dir {
		t.Fatalf("file url: %v %v", be, err)
	}
	for _, bad := range []string{"ftp://x/y", "s3:///prefix", "file://"} {
		if _, err := (Config{Vault: bad}).Storage(context.Background()); err == nil || !strings.Contains(err.Error(), "vault") {
			t.Fatalf("vault %q: err %v", bad, err)
		}
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
