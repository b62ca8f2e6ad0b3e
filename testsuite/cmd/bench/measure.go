package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// usage is what one measured subprocess did.
type usage struct {
	Wall      time.Duration
	ReadBytes int64 // /proc/<pid>/io read_bytes: from the block device
	RChar     int64 // /proc/<pid>/io rchar: every read(2), page cache included
	WriteB    int64 // /proc/<pid>/io write_bytes: dirtied for the block device
	WChar     int64 // /proc/<pid>/io wchar: every write(2), sockets included
	MaxRSS    int64 // peak VmHWM, bytes
	Stdout    []byte
}

// measured runs cmd and measures it. The child is waited for with
// WNOWAIT first, so its /proc/<pid>/io is read while it is a zombie: after
// it exits, before it is reaped, its counts are final. Peak RSS is
// sampled from /proc/<pid>/status (VmHWM) every 10 ms: getrusage's maxrss
// would not do, since a child started with vfork keeps the parent's high
// water mark across exec.
func measured(ctx context.Context, cmd *exec.Cmd) (usage, error) {
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &tailBuf{max: 4096, b: &errb}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return usage{}, err
	}
	pid := cmd.Process.Pid
	hwm := make(chan int64)
	done := make(chan struct{})
	go func() { hwm <- sampleHWM(pid, done) }()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	u := usage{Wall: time.Since(start)}
	close(done)
	u.MaxRSS = <-hwm
	io, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	for _, line := range strings.Split(string(io), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch {
		case !ok:
		case k == "read_bytes":
			u.ReadBytes = n
		case k == "rchar":
			u.RChar = n
		case k == "write_bytes":
			u.WriteB = n
		case k == "wchar":
			u.WChar = n
		}
	}
	err := cmd.Wait()
	u.Stdout = out.Bytes()
	if err != nil {
		return u, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(errb.String()))
	}
	return u, nil
}

// sampleHWM returns the largest VmHWM of pid seen until done closes.
func sampleHWM(pid int, done <-chan struct{}) int64 {
	path := fmt.Sprintf("/proc/%d/status", pid)
	var peak int64
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		data, _ := os.ReadFile(path)
		if i := bytes.Index(data, []byte("VmHWM:")); i >= 0 {
			f := strings.Fields(string(data[i+6:]))
			if len(f) > 0 {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					peak = max(peak, kb<<10)
				}
			}
		}
		select {
		case <-done:
			return peak
		case <-t.C:
		}
	}
}

// tailBuf keeps the last max bytes written to it, for error messages.
type tailBuf struct {
	max int
	b   *bytes.Buffer
}

func (t *tailBuf) Write(p []byte) (int, error) {
	t.b.Write(p)
	if t.b.Len() > t.max {
		rest := append([]byte(nil), t.b.Bytes()[t.b.Len()-t.max:]...)
		t.b.Reset()
		t.b.Write(rest)
	}
	return len(p), nil
}

// dropCaches writes back dirty pages and drops the page cache, so the
// next step reads from the device. It needs root and a writable /proc/sys
// (not in most containers); the first failure is reported once.
type cacheDropper struct {
	failed error
	warned bool
	log    io.Writer
}

func (d *cacheDropper) drop() {
	unix.Sync()
	if d.failed != nil {
		return
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		d.failed = err
		fmt.Fprintf(d.log, "warning: cannot drop caches (%v): timed steps may read from the page cache\n", err)
	}
}

// duBytes is the space the files under dir take (allocated blocks).
func duBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && !d.IsDir() {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// fsync opens path and syncs it: a restore is done when its data is durable.
func fsync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// findFile returns the first regular file named name under dir.
func findFile(dir, name string) (string, error) {
	var found string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && found == "" && d.Type().IsRegular() && d.Name() == name {
			found = p
		}
		return nil
	})
	if found == "" {
		return "", fmt.Errorf("no %s under %s", name, dir)
	}
	return found, nil
}

// cpuModel names the processor, for the report.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown cpu"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown cpu"
}
