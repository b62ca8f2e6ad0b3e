package harness

import "syscall"

// sysProcAttr kills the server if the test binary dies without cleanup
// (a panic or `go test -timeout`), so no server outlives its test run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
