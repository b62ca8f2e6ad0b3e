package vault

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/vmvault/vmvault/infra/vault/format"
)

// FuzzOpenConfig feeds arbitrary bytes to Open as the stored config: it
// must return ErrCorrupt, ErrWrongKey or ErrFormatVersion, never panic or
// run a KDF above the caps. The seeds in testdata/fuzz/FuzzOpenConfig run
// with every go test: a valid config, truncated, bad JSON, huge KDF costs,
// versions 1 and 3.
//
//	go test -run '^$' -fuzz FuzzOpenConfig -fuzztime 1m ./infra/vault/
func FuzzOpenConfig(f *testing.F) {
	be := newMem()
	if _, err := Init(context.Background(), be, []byte(testSecret), cheapInit()); err != nil {
		f.Fatal(err)
	}
	valid := be.Objs[format.ConfigKey]
	f.Add(valid)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Costs within the caps are legal but would make a run take up to a
		// GiB and seconds; costs above them must be refused, so they run.
		var c format.Config
		if json.Unmarshal(data, &c) == nil && c.KDF.Check() == nil && uint64(c.KDF.MemoryKiB)*uint64(c.KDF.Time) > 1<<10 {
			t.Skip("costly but legal KDF parameters")
		}
		be := newMem()
		be.Objs[format.ConfigKey] = data
		v, err := Open(context.Background(), be, []byte(testSecret))
		switch {
		case err == nil && v == nil:
			t.Fatal("Open returned neither a vault nor an error")
		case err == nil:
			// Only a config that the secret's master key authenticates opens.
			if got := v.Config(); !json.Valid(data) || got.Version != format.FormatVersion {
				t.Fatalf("opened config %+v", got)
			}
		case !errors.Is(err, format.ErrCorrupt) && !errors.Is(err, format.ErrWrongKey) && !errors.Is(err, format.ErrFormatVersion):
			t.Fatalf("Open: %v", err)
		}
	})
}
