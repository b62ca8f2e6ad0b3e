package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/platform"
)

// tool finds a qemu-utils program.
func tool(name string) (string, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("reading and writing qcow2 images needs %s (Debian: qemu-utils): %w", name, err)
	}
	return bin, nil
}

// runTool runs a qemu-utils program with stdout and stderr in files, not
// pipes: qemu-nbd --fork leaves a daemon that would hold a pipe open.
func runTool(ctx context.Context, name string, args ...string) (stdout, stderr string, err error) {
	bin, err := tool(name)
	if err != nil {
		return "", "", err
	}
	outf, err := os.CreateTemp("", "vmvault-"+name+"-*.out")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(outf.Name())
	defer outf.Close()
	errf, err := os.CreateTemp("", "vmvault-"+name+"-*.err")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = outf, errf
	// Its own session: a daemon it leaves is not in the worker's process
	// group, so signals meant for the worker do not stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run()
	o, _ := os.ReadFile(outf.Name())
	e, _ := os.ReadFile(errf.Name())
	return string(o), strings.TrimSpace(string(e)), err
}

// startQemuNBD serves the image at path read-only on ld.Socket with a
// qemu-nbd daemon; it returns once the socket listens.
func startQemuNBD(ctx context.Context, path string, ld localDisk) error {
	if len(ld.Socket) > 107 {
		return fmt.Errorf("qemu-nbd socket %s is longer than a unix socket path may be (107 bytes): use a shorter inventory path", ld.Socket)
	}
	if err := os.Remove(ld.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_, msg, err := runTool(ctx, "qemu-nbd", "--read-only", "--persistent", "--shared=0", "--format="+ld.Format,
		"--socket="+ld.Socket, "--fork", "--", path)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg = firstLine(msg)
	if strings.Contains(msg, "lock") {
		return fmt.Errorf("the image is in use (%s): a running QEMU holds it: %w", msg, platform.ErrDiskBusy)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && msg != "" {
		return fmt.Errorf("qemu-nbd cannot open the image: %s: %w", msg, platform.ErrInvalidVM)
	}
	return fmt.Errorf("qemu-nbd: %w: %s", err, msg)
}

// stopQemuNBD stops the qemu-nbd serving sock, if one does, and removes
// the socket. Processes are found by their command line, never by a pid
// from a payload: only a qemu-nbd started with --socket=sock is signalled.
func stopQemuNBD(ctx context.Context, sock string) error {
	pids := qemuNBDPids(sock)
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(pids) > 0 {
		var left []int
		for _, pid := range pids {
			if servesSocket(pid, sock) {
				left = append(left, pid)
			}
		}
		pids = left
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				unix.Kill(pid, unix.SIGKILL)
			}
			deadline = time.Now().Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// qemuNBDPids are the processes serving sock.
func qemuNBDPids(sock string) []int {
	var out []int
	for pid, s := range qemuNBDs() {
		if s == sock {
			out = append(out, pid)
		}
	}
	return out
}

// sweepQemuNBD stops every qemu-nbd serving a vmvault socket in dir: one
// a crashed job left would hold the VM's images locked (only one backup of
// a VM runs at a time, so none of them is in use).
func sweepQemuNBD(ctx context.Context, dir string) error {
	var errs []error
	done := map[string]bool{}
	for _, sock := range qemuNBDs() {
		if filepath.Dir(sock) == dir && strings.HasPrefix(filepath.Base(sock), localPrefix) && !done[sock] {
			done[sock] = true
			errs = append(errs, stopQemuNBD(ctx, sock))
		}
	}
	return errors.Join(errs...)
}

// qemuNBDs maps the pid of every live qemu-nbd to its --socket.
func qemuNBDs() map[int]string {
	out := map[int]string{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if sock, ok := qemuNBDSocket(pid); ok {
			out[pid] = sock
		}
	}
	return out
}

// qemuNBDSocket is the --socket of pid if it is a live qemu-nbd (a zombie
// has no command line).
func qemuNBDSocket(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(data) == 0 {
		return "", false
	}
	args := bytes.Split(bytes.TrimRight(data, "\x00"), []byte{0})
	if filepath.Base(string(args[0])) != "qemu-nbd" {
		return "", false
	}
	for _, a := range args[1:] {
		if sock, ok := strings.CutPrefix(string(a), "--socket="); ok {
			return sock, true
		}
	}
	return "", false
}

// servesSocket reports whether pid is a live qemu-nbd serving sock.
func servesSocket(pid int, sock string) bool {
	s, ok := qemuNBDSocket(pid)
	return ok && s == sock
}

// checkImage runs qemu-img check on a qcow2 image: corruption (a truncated
// file, damaged tables) is an error; leaked clusters are a note.
func checkImage(ctx context.Context, path string) (note string, err error) {
	out, msg, err := runTool(ctx, "qemu-img", "check", "--output=json", "-f", "qcow2", path)
	var res struct {
		Corruptions int `json:"corruptions"`
		Leaks       int `json:"leaks"`
		CheckErrors int `json:"check-errors"`
	}
	jerr := json.Unmarshal([]byte(out), &res)
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	switch {
	case jerr != nil && err != nil:
		return "", fmt.Errorf("qemu-img check cannot read the image: %s: %w", firstLine(msg), platform.ErrInvalidVM)
	case jerr != nil:
		return "", fmt.Errorf("qemu-img check: unexpected output %q: %v", firstLine(out), jerr)
	case res.Corruptions > 0 || res.CheckErrors > 0:
		detail := firstLine(msg)
		if detail != "" {
			detail = ", first: " + detail
		}
		return "", fmt.Errorf("damaged qcow2 image (truncated or corrupt): qemu-img check found %d corruptions and %d check errors%s: %w",
			res.Corruptions, res.CheckErrors, detail, platform.ErrInvalidVM)
	case res.Leaks > 0:
		return fmt.Sprintf("qemu-img check: %d leaked clusters (wasted space, no data lost; qemu-img check -r leaks reclaims it)", res.Leaks), nil
	}
	return "", nil
}

// backingChain returns the files an image reads, itself first, and its
// virtual size.
func backingChain(ctx context.Context, path, format string) ([]string, int64, error) {
	out, msg, err := runTool(ctx, "qemu-img", "info", "-U", "--backing-chain", "--output=json", "-f", format, path)
	if err != nil {
		return nil, 0, fmt.Errorf("qemu-img info: %s: %w", firstLine(msg), err)
	}
	var infos []struct {
		Filename            string `json:"filename"`
		VirtualSize         int64  `json:"virtual-size"`
		FullBackingFilename string `json:"full-backing-filename"`
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) == 0 {
		return nil, 0, fmt.Errorf("qemu-img info: unexpected output %q: %v", firstLine(out), err)
	}
	files := []string{path}
	for i := 1; i < len(infos); i++ {
		f := infos[i-1].FullBackingFilename
		if f == "" {
			f = infos[i].Filename
		}
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(files[i-1]), f)
		}
		files = append(files, filepath.Clean(f))
	}
	return files, infos[0].VirtualSize, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
