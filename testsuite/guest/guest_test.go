package guest_test

import (
	"encoding/binary"
	"os"
	"os/exec"
	"testing"

	"github.com/vmvault/vmvault/testsuite/guest"
)

// TestImage: the cached image has a kernel, an initrd and an fsck-clean
// ext4 root file system (built first when missing).
func TestImage(t *testing.T) {
	kernel, initrd, rootfs := guest.Image(t)
	for _, f := range []string{kernel, initrd} {
		if fi, err := os.Stat(f); err != nil || fi.Size() < 1<<20 {
			t.Fatalf("%s: %v (want over 1 MiB)", f, err)
		}
	}
	f, err := os.Open(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 1024+0x38); err != nil || binary.LittleEndian.Uint16(magic[:]) != 0xEF53 {
		t.Fatalf("%s: no ext4 superblock (%x, %v)", rootfs, magic, err)
	}
	if out, err := exec.Command("e2fsck", "-fn", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn %s: %v: %s", rootfs, err, out)
	}
}
