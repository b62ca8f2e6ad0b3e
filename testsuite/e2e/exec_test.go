package e2e

import "os/exec"

func osExec(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
