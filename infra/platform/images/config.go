package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/platform"
)

// maxConfigSize bounds what is read of vm.json and the restore files: a
// definition is a few KiB.
const maxConfigSize = 4 << 20

// parseConfig decodes and validates vm.json of the folder named folder.
// Unknown fields are allowed so that a newer vmvault's vm.json reads. Errors
// wrap platform.ErrInvalidVM (or ErrNotSupported) and name the field.
func parseConfig(data []byte, folder string) (platform.VM, error) {
	var vm platform.VM
	if err := json.Unmarshal(data, &vm); err != nil {
		return platform.VM{}, fmt.Errorf("%w: %v", platform.ErrInvalidVM, err)
	}
	if vm.Name == "" {
		vm.Name = folder
	}
	if vm.Name != folder {
		return platform.VM{}, fmt.Errorf("%w: name: %q differs from the folder name %q", platform.ErrInvalidVM, vm.Name, folder)
	}
	if vm.Power == "" {
		vm.Power = platform.PowerStopped
	}
	if err := normalize(&vm); err != nil {
		return platform.VM{}, err
	}
	return vm, nil
}

// normalize validates a VM definition and fills in defaults (file names,
// format). Errors wrap platform.ErrInvalidVM and name the field, as in
// "disks[1].size_bytes: negative (-5)".
func normalize(vm *platform.VM) error {
	invalid := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", platform.ErrInvalidVM, field, fmt.Sprintf(format, args...))
	}
	if !validName.MatchString(vm.Name) {
		return invalid("name", "bad vm name %q (letters, digits, '.', '_', '-'; not starting with a dot)", vm.Name)
	}
	switch vm.OS {
	case platform.OSLinux, platform.OSWindows:
	default:
		return invalid("os", "%q is not %q or %q", vm.OS, platform.OSLinux, platform.OSWindows)
	}
	if vm.CPUs < 0 {
		return invalid("cpu", "negative (%d)", vm.CPUs)
	}
	if vm.MemoryMB < 0 {
		return invalid("memory_mb", "negative (%d)", vm.MemoryMB)
	}
	switch vm.Power {
	case platform.PowerRunning, platform.PowerStopped:
	default:
		return invalid("power_state", "%q is not %q or %q", vm.Power, platform.PowerRunning, platform.PowerStopped)
	}
	var osDisks int
	names := map[string]bool{}
	files := map[string]string{}
	luns := map[int]string{}
	for i := range vm.Disks {
		d := &vm.Disks[i]
		field := func(f string) string { return fmt.Sprintf("disks[%d].%s", i, f) }
		if !validName.MatchString(d.Name) {
			return invalid(field("name"), "bad disk name %q", d.Name)
		}
		if names[d.Name] {
			return invalid(field("name"), "two disks named %q", d.Name)
		}
		names[d.Name] = true
		switch d.Role {
		case platform.DiskOS:
			osDisks++
		case platform.DiskData:
			if d.LUN < 0 || d.LUN > maxLUN {
				return invalid(field("lun"), "%d is outside 0..%d", d.LUN, maxLUN)
			}
			if other, ok := luns[d.LUN]; ok {
				return invalid(field("lun"), "disks %q and %q both use lun %d", other, d.Name, d.LUN)
			}
			luns[d.LUN] = d.Name
		case platform.DiskTemp:
		default:
			return invalid(field("role"), "%q is not os, data or temp", d.Role)
		}
		if d.SizeBytes < 0 {
			return invalid(field("size_bytes"), "negative (%d)", d.SizeBytes)
		}
		switch d.Format {
		case "":
			d.Format = formatRaw
		case formatRaw, formatQcow2:
		default:
			return invalid(field("format"), "unknown format %q (raw or qcow2)", d.Format)
		}
		if d.File == "" {
			d.File = d.Name + "." + d.Format
		}
		clean := filepath.Clean(d.File)
		if !filepath.IsLocal(clean) || clean == ConfigFile {
			return invalid(field("file"), "%q must be a path inside the vm folder", d.File)
		}
		// Hidden names are the platform's own (staging files, restore
		// markers, vm.json's temporary file): a disk may never be one.
		for _, e := range strings.Split(clean, string(filepath.Separator)) {
			if err := diskfile.CheckName(e); err != nil {
				return invalid(field("file"), "%q: no path element may start with a dot", d.File)
			}
		}
		d.File = clean
		if other, ok := files[clean]; ok {
			return invalid(field("file"), "disks %q and %q share the file %q", other, d.Name, clean)
		}
		files[clean] = d.Name
	}
	if osDisks != 1 {
		return invalid("disks", "%d os disks, want exactly one", osDisks)
	}
	return nil
}

// readFileAt reads a small regular file beneath dir without following
// symlinks.
func readFileAt(dir *os.File, rel string) ([]byte, error) {
	f, err := openRegular(dir, rel, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", f.Name(), maxConfigSize)
	}
	return data, nil
}

// writeFileAt replaces dir/name atomically: a crash leaves the old or the
// new file, never a torn one. The temporary file is hidden, so it is never
// taken for a VM or a disk.
func writeFileAt(dir *os.File, name string, data []byte) error {
	tmp := fmt.Sprintf(".%s.tmp-%d", name, os.Getpid())
	fd := int(dir.Fd())
	unix.Unlinkat(fd, tmp, 0) // a leftover of a crashed write of this process id
	f, err := openBeneath(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(fd, tmp, fd, name)
	}
	if err == nil {
		err = dir.Sync()
	}
	if err != nil {
		unix.Unlinkat(fd, tmp, 0)
		return fmt.Errorf("write %s: %w", filepath.Join(dir.Name(), name), err)
	}
	return nil
}

// writeConfig replaces vm.json in the vm folder dir atomically.
func writeConfig(dir *os.File, vm platform.VM) error {
	data, err := json.MarshalIndent(vm, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAt(dir, ConfigFile, append(data, '\n'))
}

func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT)
}
