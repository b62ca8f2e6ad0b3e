package storage

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/vmvault/vmvault/infra/registry"
)

// Opener opens the backend a vault URL names (scheme already matched).
type Opener func(ctx context.Context, u *url.URL) (Backend, error)

// Provisioner is implemented by backends whose container must exist before
// a vault can be created in it (an S3 bucket). Provision is idempotent.
type Provisioner interface {
	Provision(ctx context.Context) error
}

// Registry maps URL schemes to backends. The binaries fill one (the
// composition root); adding a backend, or a wrapper around one, is one
// Register call.
type Registry struct {
	registry.Registry[Opener]
}

// Open opens the backend at location: a URL ("s3://bucket/prefix",
// "file:///srv/vault") or, as a shorthand for file://, an absolute path.
func (r *Registry) Open(ctx context.Context, location string) (Backend, error) {
	if location == "" {
		return nil, fmt.Errorf("vault location is empty")
	}
	u, err := url.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("vault %q: %w", location, err)
	}
	if u.Scheme == "" {
		if !filepath.IsAbs(location) {
			return nil, fmt.Errorf("vault %q: want a URL (%s://...) or an absolute path", location, strings.Join(r.Names(), "://, "))
		}
		u = &url.URL{Scheme: "file", Path: location}
	}
	open, ok := r.Lookup(u.Scheme)
	if !ok {
		return nil, fmt.Errorf("vault %q: unknown scheme %q (this build has %s)", location, u.Scheme, r.List())
	}
	be, err := open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("vault %q: %w", location, err)
	}
	return be, nil
}
