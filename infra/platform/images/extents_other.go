//go:build !linux

package images

import (
	"context"
	"os"

	"github.com/vmvault/vmvault/infra/extent"
)

// dataExtents cannot find holes here: the whole file may hold data.
func dataExtents(ctx context.Context, f *os.File, size int64) ([]extent.Extent, error) {
	if size == 0 {
		return nil, nil
	}
	return []extent.Extent{{Offset: 0, Length: size}}, nil
}
