//go:build linux

package imagelock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmvault/vmvault/infra/imagelock"
)

// The test binary doubles as "another process" holding a lock.
func TestMain(m *testing.M) {
	if path := os.Getenv("IMAGELOCK_HELPER_PATH"); path != "" {
		os.Exit(helper(path, os.Getenv("IMAGELOCK_HELPER_MODE")))
	}
	os.Exit(m.Run())
}

func helper(path, mode string) int {
	switch mode {
	case "qemu-writer":
		if _, err := imagelock.HoldWriteLock(path); err != nil {
			fmt.Println(err)
			return 1
		}
	case "posix-wrlck", "posix-rdlck":
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		typ := int16(unix.F_WRLCK)
		if mode == "posix-rdlck" {
			typ = unix.F_RDLCK
		}
		lk := unix.Flock_t{Type: typ, Start: 0, Len: 0}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n') // hold until the parent closes stdin
	return 0
}

// runHelper starts a child holding a lock on path and stops it at cleanup.
func runHelper(t *testing.T, path, mode string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "IMAGELOCK_HELPER_PATH="+path, "IMAGELOCK_HELPER_MODE="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper %s: %q %v", mode, line, err)
	}
}

func image(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnlockedImageIsFree(t *testing.T) {
	if err := imagelock.CheckNotWritten(image(t)); err != nil {
		t.Fatal(err)
	}
}

func TestMissingImage(t *testing.T) {
	err := imagelock.CheckNotWritten(filepath.Join(t.TempDir(), "nope.raw"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestWriterInSameProcess(t *testing.T) {
	path := image(t)
	release, err := imagelock.HoldWriteLock(path)
	if err != nil {
		t.Fatal(err)
	}
	err = imagelock.CheckNotWritten(path)
	if !errors.Is(err, imagelock.ErrBusy) {
		t.Fatalf("CheckNotWritten with a writer: %v", err)
	}
	t.Log(err)
	// A second writer is refused as QEMU refuses a second VM on one image.
	if _, err := imagelock.HoldWriteLock(path); !errors.Is(err, imagelock.ErrBusy) {
		t.Fatalf("second HoldWriteLock: %v", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := imagelock.CheckNotWritten(path); err != nil {
		t.Fatalf("after release: %v", err)
	}
	release2, err := imagelock.HoldWriteLock(path)
	if err != nil {
		t.Fatalf("HoldWriteLock after release: %v", err)
	}
	release2()
}

func TestOtherProcesses(t *testing.T) {
	for _, tc := range []struct {
		mode string
		busy bool
	}{
		{"qemu-writer", true},
		{"posix-wrlck", true},
		// QEMU too reads any lock over byte 101 as a writer's.
		{"posix-rdlck", true},
		{"none", false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			path := image(t)
			runHelper(t, path, tc.mode)
			err := imagelock.CheckNotWritten(path)
			if tc.busy != errors.Is(err, imagelock.ErrBusy) || (!tc.busy && err != nil) {
				t.Fatalf("busy=%v, got %v", tc.busy, err)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

// An exclusive lock beyond QEMU's shared lock bytes is still found.
func TestExclusiveLockAfterSharedOnes(t *testing.T) {
	path := image(t)
	release, err := imagelock.HoldWriteLock(path)
	if err != nil {
		t.Fatal(err)
	}
	release() // leave only the generic locks below
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, lk := range []unix.Flock_t{
		{Type: unix.F_RDLCK, Start: 0, Len: 10},
		{Type: unix.F_RDLCK, Start: 50, Len: 10},
		{Type: unix.F_WRLCK, Start: 1000, Len: 10},
	} {
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			t.Fatal(err)
		}
	}
	if err := imagelock.CheckNotWritten(path); !errors.Is(err, imagelock.ErrBusy) {
		t.Fatalf("got %v", err)
	}
}
