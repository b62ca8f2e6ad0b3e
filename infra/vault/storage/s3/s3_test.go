package s3_test

import (
	"errors"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
	"github.com/vmvault/vmvault/infra/vault/storage/storagetest"
	"github.com/vmvault/vmvault/testsuite/harness"
)

// TestConformance runs the suite against a real MinIO: a fresh bucket per
// subtest, and once more with a key prefix to check prefixes are applied
// and stripped.
func TestConformance(t *testing.T) {
	m := harness.StartMinIO(t)
	t.Run("bucket", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Backend {
			b, err := s3.New(t.Context(), m.Config(m.NewBucket(t)))
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
	t.Run("prefix", func(t *testing.T) {
		bucket := m.NewBucket(t)
		// A neighbour under a sibling prefix must never show up.
		cfg := m.Config(bucket)
		cfg.Prefix = "vaults/other"
		other, err := s3.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Put(t.Context(), "config", []byte("other vault")); err != nil {
			t.Fatal(err)
		}
		n := 0
		storagetest.Run(t, func(t *testing.T) storage.Backend {
			n++
			cfg := m.Config(bucket)
			cfg.Prefix = "vaults/v" + string(rune('a'+n)) // no trailing slash: New adds it
			b, err := s3.New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
}

func TestLocation(t *testing.T) {
	b, err := s3.New(t.Context(), s3.Config{Bucket: "bkt", Prefix: "a/b", Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Location(), "s3://bkt/a/b"; got != want {
		t.Fatalf("Location() = %q, want %q", got, want)
	}
}

// A missing bucket is a configuration error, not an empty vault.
func TestMissingBucketIsNotErrNotFound(t *testing.T) {
	m := harness.StartMinIO(t)
	b, err := s3.New(t.Context(), m.Config("no-such-bucket"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(t.Context(), "config"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get from a missing bucket: error = %v, want a non-ErrNotFound error", err)
	}
}

func TestEnsureBucketIdempotent(t *testing.T) {
	m := harness.StartMinIO(t)
	bucket := m.NewBucket(t)
	if err := s3.EnsureBucket(t.Context(), m.Config(bucket)); err != nil {
		t.Fatalf("EnsureBucket of an existing bucket: %v", err)
	}
}
