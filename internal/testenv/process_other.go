//go:build !linux

package testenv

import "syscall"

// There is no parent-death signal elsewhere than on Linux: children of a killed test outlive it.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// waitExited cannot wait without reaping here: what the process leaves in its group stays.
func waitExited(int) bool { return false }
