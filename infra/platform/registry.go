package platform

import (
	"context"
	"fmt"

	"github.com/vmvault/vmvault/infra/registry"
)

// Opener opens a platform from the settings it was registered with.
type Opener func(ctx context.Context) (Platform, error)

// Registry maps platform names (VMVAULT_PLATFORM) to platforms. The binaries
// fill one (the composition root); adding a platform is one Register call.
type Registry struct {
	registry.Registry[Opener]
}

// Open opens the named platform.
func (r *Registry) Open(ctx context.Context, name string) (Platform, error) {
	open, ok := r.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown platform %q (VMVAULT_PLATFORM: this build has %s)", name, r.List())
	}
	p, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s platform: %w", name, err)
	}
	return p, nil
}
