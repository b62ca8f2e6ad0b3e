// Package guest builds and boots the small Linux guest of the tests that
// need a real guest OS: a minimal Debian (debootstrap --variant=minbase
// with a kernel, systemd and qemu-guest-agent) in a raw ext4 image, with
// its kernel and initrd beside it so QEMU boots it directly (-kernel,
// -initrd, -append root=/dev/vda), without a bootloader.
//
// The image is built once per recipe and kept outside the clone, in
// $VMVAULT_GUEST_CACHE or else $HOME/.cache/vmvault/guest/<key>/, where
// key names the suite and a hash of the recipe: changing the recipe
// builds a new image beside the old. Builds take a lock file, so parallel
// test binaries build it once; a build is made in a temporary folder and
// renamed into place when complete.
package guest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Suite is the Debian release of the guest.
const Suite = "bookworm"

// Mirror is where debootstrap fetches packages.
const Mirror = "http://deb.debian.org/debian"

// packages are installed on top of minbase. udev makes the agent's
// virtio-serial port appear as a device, which starts the agent.
var packages = []string{"linux-image-amd64", "qemu-guest-agent", "systemd-sysv", "e2fsprogs", "udev"}

// recipe changes whenever the image's content would: it keys the cache.
const recipe = "v1: fstab /dev/vda; hostname vmvault-guest; agent wanted by multi-user.target; no apt caches; 25% free"

// Paths are the files of a built guest.
type Paths struct {
	Dir    string
	Kernel string // vmlinuz
	Initrd string // initrd.img
	Rootfs string // rootfs.raw, ext4 on the whole disk (root=/dev/vda)
}

// Key names the current recipe's image.
func Key() string {
	h := sha256.Sum256([]byte(Suite + "|" + strings.Join(packages, ",") + "|" + recipe))
	return Suite + "-" + hex.EncodeToString(h[:6])
}

// CacheDir is where images are kept: $VMVAULT_GUEST_CACHE, else
// $HOME/.cache/vmvault/guest.
func CacheDir() (string, error) {
	if d := os.Getenv("VMVAULT_GUEST_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("guest cache: %w", err)
	}
	return filepath.Join(home, ".cache", "vmvault", "guest"), nil
}

func pathsIn(dir string) Paths {
	return Paths{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), Rootfs: filepath.Join(dir, "rootfs.raw")}
}

// ErrCannotBuild says this host cannot run debootstrap at all (not
// installed, not root); tests skip on it.
var ErrCannotBuild = errors.New("cannot build the guest image here")

// CanBuild says why debootstrap cannot run here, or nil.
func CanBuild() error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("%w: debootstrap is not installed (make deps installs Debian's debootstrap)", ErrCannotBuild)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: debootstrap needs root", ErrCannotBuild)
	}
	return nil
}

// Build returns the cached image under cache, building it first when it
// is missing; the build's progress goes to log.
func Build(ctx context.Context, cache string, log io.Writer) (Paths, error) {
	dir := filepath.Join(cache, Key())
	p := pathsIn(dir)
	if _, err := os.Stat(p.Rootfs); err == nil {
		return p, nil
	}
	if err := CanBuild(); err != nil {
		return Paths{}, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Paths{}, fmt.Errorf("guest cache: %w", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Paths{}, fmt.Errorf("guest lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return Paths{}, fmt.Errorf("guest lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(p.Rootfs); err == nil {
		return p, nil // built by whoever held the lock
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp) // an interrupted build
	start := time.Now()
	if err := build(ctx, tmp, log); err != nil {
		os.RemoveAll(tmp)
		return Paths{}, fmt.Errorf("build guest image %s: %w", Key(), err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return Paths{}, fmt.Errorf("build guest image: %w", err)
	}
	fmt.Fprintf(log, "guest image %s built in %s\n", dir, time.Since(start).Round(time.Second))
	return p, nil
}
