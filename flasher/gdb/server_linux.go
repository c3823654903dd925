package gdb

import "syscall"

// serverProcAttr puts a GDB server in a process group of its own and has
// the kernel kill it when the station dies, however hard (SIGKILL, a
// crash): no server is left holding a probe or a port. The signal reaches
// the group's leader only; Close ends the rest of the group.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
