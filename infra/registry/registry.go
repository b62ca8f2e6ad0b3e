// Package registry is the name → constructor table the composition root
// fills: storage backends by URL scheme, platforms by name. One type, so
// every pluggable part registers and reports the same way.
package registry

import (
	"sort"
	"strings"
)

// Registry maps names to values (usually constructors).
type Registry[T any] struct {
	byName map[string]T
}

// Register makes name resolve to v, replacing an earlier registration.
func (r *Registry[T]) Register(name string, v T) {
	if r.byName == nil {
		r.byName = map[string]T{}
	}
	r.byName[name] = v
}

// Lookup returns what name resolves to.
func (r *Registry[T]) Lookup(name string) (T, bool) {
	v, ok := r.byName[name]
	return v, ok
}

// Names lists the registered names, sorted.
func (r *Registry[T]) Names() []string {
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// List is Names joined for messages: "file, s3".
func (r *Registry[T]) List() string { return strings.Join(r.Names(), ", ") }
