// Command guestimage builds the tests' Linux guest image into its cache
// (see package guest) unless it is there, and prints where it is.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/vmvault/vmvault/testsuite/guest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cache, err := guest.CacheDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	p, err := guest.Build(ctx, cache, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestimage:", err)
		os.Exit(1)
	}
	fmt.Printf("guest image %s (%s)\n", p.Dir, time.Since(start).Round(time.Second))
}
