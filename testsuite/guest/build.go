package guest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// build makes the image in dir: debootstrap into dir/tree, configure the
// tree, take its kernel and initrd out, then mke2fs -d the tree into
// rootfs.raw (no loop mount) and remove the tree.
func build(ctx context.Context, dir string, log io.Writer) error {
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(log, "debootstrap %s (minbase + %s) into %s\n", Suite, strings.Join(packages, " "), tree)
	if err := run(ctx, log, "debootstrap", "--variant=minbase", "--include="+strings.Join(packages, ","), Suite, tree, Mirror); err != nil {
		return err
	}
	if err := configure(tree); err != nil {
		return fmt.Errorf("configure guest: %w", err)
	}
	p := pathsIn(dir)
	for _, f := range []struct{ glob, dst string }{{"vmlinuz-*", p.Kernel}, {"initrd.img-*", p.Initrd}} {
		m, _ := filepath.Glob(filepath.Join(tree, "boot", f.glob))
		var found []string
		for _, name := range m {
			if !strings.HasSuffix(name, ".dpkg-bak") && !strings.HasSuffix(name, ".new") {
				found = append(found, name)
			}
		}
		if len(found) != 1 {
			return fmt.Errorf("want one /boot/%s in the guest, found %q", f.glob, found)
		}
		if err := os.Rename(found[0], f.dst); err != nil {
			return err
		}
	}
	used, err := treeBytes(tree)
	if err != nil {
		return err
	}
	// A quarter free, so tests can write in the guest.
	size := (used*4/3 + 128<<20) &^ (1<<20 - 1)
	fmt.Fprintf(log, "mke2fs -d: %d MiB of files into a %d MiB ext4 image\n", used>>20, size>>20)
	if err := run(ctx, log, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "vmvault-guest", "-d", tree, p.Rootfs+".tmp", fmt.Sprintf("%dM", size>>20)); err != nil {
		return err
	}
	if err := os.Rename(p.Rootfs+".tmp", p.Rootfs); err != nil {
		return err
	}
	return os.RemoveAll(tree)
}

// configure makes the tree boot as a VM with the agent answering.
func configure(tree string) error {
	rule := filepath.Join(tree, "lib/udev/rules.d/60-qemu-guest-agent.rules")
	if _, err := os.Stat(rule); err != nil {
		// Debian's package starts the agent from this rule when the port appears.
		return fmt.Errorf("qemu-guest-agent's udev rule is missing: %w", err)
	}
	files := map[string]string{
		"etc/fstab":    "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
		"etc/hostname": "vmvault-guest\n",
		"etc/hosts":    "127.0.0.1 localhost vmvault-guest\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(tree, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, dir := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		m, _ := filepath.Glob(filepath.Join(tree, dir, "*"))
		for _, f := range m {
			if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
				os.Remove(f)
			}
		}
	}
	return nil
}

func treeBytes(tree string) (int64, error) {
	var n int64
	err := filepath.WalkDir(tree, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size() + 4096 // a block of slack per inode
		}
		return nil
	})
	return n, err
}

func run(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var tail tailWriter
	cmd.Stdout = io.MultiWriter(log, &tail)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, tail.String())
	}
	return nil
}

// tailWriter keeps the last lines a command wrote, for its error.
type tailWriter struct{ b []byte }

func (w *tailWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	if len(w.b) > 2048 {
		w.b = w.b[len(w.b)-2048:]
	}
	return len(p), nil
}

func (w *tailWriter) String() string { return strings.TrimSpace(string(w.b)) }
