package storage_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

type named struct {
	storage.Backend
	u *url.URL
}

func TestRegistryOpen(t *testing.T) {
	var r storage.Registry
	for _, s := range []string{"file", "s3"} {
		r.Register(s, func(_ context.Context, u *url.URL) (storage.Backend, error) { return named{u: u}, nil })
	}
	for _, tc := range []struct{ in, scheme, host, path string }{
		{"file:///srv/vault", "file", "", "/srv/vault"},
		{"/srv/vault", "file", "", "/srv/vault"},
		{"s3://bucket/pre/fix", "s3", "bucket", "/pre/fix"},
	} {
		be, err := r.Open(context.Background(), tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		u := be.(named).u
		if u.Scheme != tc.scheme || u.Host != tc.host || u.Path != tc.path {
			t.Errorf("%s: got %s %s %s", tc.in, u.Scheme, u.Host, u.Path)
		}
	}
	for in, want := range map[string]string{
		"gs://bucket/x": `unknown scheme "gs" (this build has file, s3)`,
		"relative/path": "want a URL",
		"":              "empty",
	} {
		if _, err := r.Open(context.Background(), in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}
