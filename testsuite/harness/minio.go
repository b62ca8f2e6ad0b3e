package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

// MinIO is a running MinIO server owned by one test.
type MinIO struct {
	Endpoint  string // "http://127.0.0.1:port"
	AccessKey string
	SecretKey string
	Region    string

	t       testing.TB
	dir     string
	addr    string
	console string
	proc    *process
}

// StartMinIO starts bin/minio on a fresh temporary directory with random
// root credentials and stops it when the test ends.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m := &MinIO{
		AccessKey: "vmvault-" + randomHex(6),
		SecretKey: randomHex(20),
		Region:    "us-east-1",
		t:         t,
		dir:       t.TempDir(),
	}
	startOnFreePorts(t, func() error {
		m.addr = "127.0.0.1:" + strconv.Itoa(FreePort(t))
		m.console = "127.0.0.1:" + strconv.Itoa(FreePort(t))
		m.Endpoint = "http://" + m.addr
		return m.run()
	})
	return m
}

// Stop stops the server (SIGTERM), keeping its data for Start.
func (m *MinIO) Stop() {
	m.t.Helper()
	m.proc.stop()
}

// Start starts a stopped server again on the same data directory, address
// and credentials, and waits until it is ready.
func (m *MinIO) Start() {
	m.t.Helper()
	if !m.proc.exited() {
		m.t.Fatal("minio: Start while it runs")
	}
	var err error
	for range 20 { // the old listener's port may take a moment to free
		if err = m.run(); !errors.Is(err, errPortTaken) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		m.t.Fatal(err)
	}
}

func (m *MinIO) run() error {
	m.proc = startProcess(m.t, "minio",
		[]string{"server", m.dir, "--address", m.addr, "--console-address", m.console},
		[]string{
			"MINIO_ROOT_USER=" + m.AccessKey,
			"MINIO_ROOT_PASSWORD=" + m.SecretKey,
			"MINIO_REGION=" + m.Region,
			"MINIO_UPDATE=off",
			"MINIO_CI_CD=1", // no terminal colours and banners meant for humans
		})
	client := &http.Client{Timeout: 2 * time.Second}
	url := m.Endpoint + "/minio/health/live"
	return m.proc.awaitReady(60*time.Second, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return statusErr(url, resp.StatusCode)
		}
		return nil
	})
}

// Config is the s3 backend configuration for bucket on this server.
func (m *MinIO) Config(bucket string) s3.Config {
	return s3.Config{
		Endpoint:        m.Endpoint,
		Region:          m.Region,
		Bucket:          bucket,
		PathStyle:       true,
		AccessKeyID:     m.AccessKey,
		SecretAccessKey: m.SecretKey,
	}
}

var notBucketChars = regexp.MustCompile(`[^a-z0-9-]+`)

// NewBucket creates an empty bucket named after the test and returns its name.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	name := strings.Trim(notBucketChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = strings.TrimRight(name[:40], "-")
	}
	bucket := fmt.Sprintf("t-%s-%s", name, randomHex(6)) // at most 2+40+1+12 = 55 < 63
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s3.EnsureBucket(ctx, m.Config(bucket)); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	return bucket
}
