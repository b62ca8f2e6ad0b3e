package qemu

import (
	"errors"

	"golang.org/x/sys/unix"
)

const syscallNoFollow = unix.O_NOFOLLOW

func isRefused(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT)
}
