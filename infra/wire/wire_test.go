package wire

import (
	"context"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/config"
)

func TestStorageURLs(t *testing.T) {
	dir := t.TempDir()
	for _, loc := range []string{"file://" + dir, dir} {
		be, err := OpenStorage(context.Background(), config.Config{Vault: loc})
		if err != nil || be.Location() != "file://"+dir {
			t.Fatalf("%s: %v %v", loc, be, err)
		}
	}
	for bad, want := range map[string]string{
		"ftp://x/y":    `unknown scheme "ftp"`,
		"s3:///prefix": "no bucket",
		"file://":      "no path",
		"rel/path":     "absolute path",
	} {
		if _, err := OpenStorage(context.Background(), config.Config{Vault: bad}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("vault %q: got %v, want %q", bad, err, want)
		}
	}
	be, err := OpenStorage(context.Background(), config.Config{Vault: "s3://backups/site-a/vault", S3Endpoint: "http://127.0.0.1:9", S3PathStyle: true})
	if err != nil || be.Location() != "s3://backups/site-a/vault" {
		t.Fatalf("s3 url: %v %v", be, err)
	}
}

func TestPlatforms(t *testing.T) {
	c := config.Config{Platform: "images", ImagesRoot: t.TempDir(), QEMUInventory: t.TempDir()}
	if _, err := OpenPlatform(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	c.Platform = "qemu"
	if _, err := OpenPlatform(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	c.Platform = "hyperv"
	if _, err := OpenPlatform(context.Background(), c); err == nil || !strings.Contains(err.Error(), `unknown platform "hyperv" (VMVAULT_PLATFORM: this build has images, qemu)`) {
		t.Fatalf("unknown platform: %v", err)
	}
}
