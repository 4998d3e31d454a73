//go:build linux

package sandbox

import "syscall"

// setParentDeathSignal kills the child if the test binary dies without cleaning up (a test
// timeout panics the whole binary), so no emulator outlives the run.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
