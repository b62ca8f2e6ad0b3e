package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

// minio is a MinIO server the bench started on a temporary folder.
type minio struct {
	cmd                 *exec.Cmd
	endpoint, user, key string
}

// findMinio is bin/minio (make tools), else the newest in the tools cache.
func findMinio(flag string) string {
	if _, err := os.Stat(flag); err == nil {
		return flag
	}
	home, _ := os.UserHomeDir()
	m, _ := filepath.Glob(filepath.Join(home, ".cache", "vmvault", "bin", "minio-*"))
	if len(m) > 0 {
		return m[len(m)-1]
	}
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startMinio starts bin at a free port with data in dir and waits until
// it is live.
func startMinio(ctx context.Context, bin, dir string) (*minio, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &minio{endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), user: "bench-" + randHex(4), key: randHex(16)}
	m.cmd = exec.Command(bin, "server", dir, "--address", fmt.Sprintf("127.0.0.1:%d", port), "--console-address", fmt.Sprintf("127.0.0.1:%d", cport))
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.user, "MINIO_ROOT_PASSWORD="+m.key, "MINIO_REGION=us-east-1", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := client.Get(m.endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m.stop()
			return nil, fmt.Errorf("minio at %s did not become live: %v", m.endpoint, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *minio) config(bucket string) *s3.Config {
	return &s3.Config{Endpoint: m.endpoint, Region: "us-east-1", Bucket: bucket, PathStyle: true, AccessKeyID: m.user, SecretAccessKey: m.key}
}

func (m *minio) stop() {
	if m.cmd.Process != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	}
}
