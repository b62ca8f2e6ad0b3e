//go:build linux

package images

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/extent"
)

// dataExtents lists the data regions of f below size with SEEK_DATA and
// SEEK_HOLE. A file system that cannot tell gets one extent of the whole
// file. lseek moves the shared file offset, which ReadAt (pread) ignores.
func dataExtents(ctx context.Context, f *os.File, size int64) ([]extent.Extent, error) {
	fd := int(f.Fd())
	var out []extent.Extent
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from off to the end
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return wholeFile(size), nil
		}
		if err != nil {
			return nil, err
		}
		if start >= size {
			break
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return wholeFile(size), nil
		}
		if err != nil {
			return nil, err
		}
		end = min(end, size)
		if end <= start {
			break
		}
		out = append(out, extent.Extent{Offset: start, Length: end - start})
		off = end
	}
	return out, nil
}

func wholeFile(size int64) []extent.Extent {
	if size == 0 {
		return nil
	}
	return []extent.Extent{{Offset: 0, Length: size}}
}
