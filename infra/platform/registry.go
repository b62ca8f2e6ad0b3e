package platform

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Opener opens a platform from the settings it was registered with.
type Opener func(ctx context.Context) (Platform, error)

// Registry maps platform names (VMVAULT_PLATFORM) to platforms. The binaries
// fill one (the composition root); adding a platform is one Register call.
type Registry struct {
	openers map[string]Opener
}

// Register makes name open with open.
func (r *Registry) Register(name string, open Opener) {
	if r.openers == nil {
		r.openers = map[string]Opener{}
	}
	r.openers[name] = open
}

// Names lists the registered platforms, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.openers))
	for n := range r.openers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Open opens the named platform.
func (r *Registry) Open(ctx context.Context, name string) (Platform, error) {
	open, ok := r.openers[name]
	if !ok {
		return nil, fmt.Errorf("unknown platform %q (VMVAULT_PLATFORM: this build has %s)", name, strings.Join(r.Names(), ", "))
	}
	p, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s platform: %w", name, err)
	}
	return p, nil
}
