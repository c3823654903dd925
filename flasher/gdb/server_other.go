//go:build !linux

package gdb

import "syscall"

// serverProcAttr puts a GDB server in a process group of its own. Only
// Linux has a parent-death signal.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
