package packaging

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deadlineGrace is what a test keeps, before the deadline of go test
// -timeout, to kill its children, report what they printed and clean up:
// a child still running at that deadline would otherwise be reported by
// a panic that shows none of its output.
const deadlineGrace = 30 * time.Second

// testContext returns a context that ends when the test ends, or
// deadlineGrace before the test binary's deadline, whichever comes first.
// Every child process the package's tests start is bound to it.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, d.Add(-deadlineGrace),
			fmt.Errorf("the test binary's deadline (go test -timeout) is less than %v away", deadlineGrace))
		t.Cleanup(cancel)
	}
	return ctx
}

// childErr adds to err, the error of a child bound to ctx, why ctx ended
// when it did: then the child was killed for it.
func childErr(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("%w (killed: %w)", err, context.Cause(ctx))
}

// releaseRoot ends what a test left running in the Debian root r and
// unmounts what is mounted below it, so that removing r removes only r.
//
// Commands the test runs in r through chroot are its children and end
// with their process groups, but a daemon that a maintainer script starts
// there (double-forked, in a session of its own) escapes both the group
// and the parent-death signal: it is found by its root directory, killed
// and waited for. debootstrap mounts /proc and /sys (and, in a container,
// devices) in r and unmounts them on exit, which a killed debootstrap
// does not do.
func releaseRoot(t *testing.T, r string) {
	t.Helper()
	if real, err := filepath.EvalSymlinks(r); err == nil {
		r = real // as /proc/PID/root and /proc/self/mountinfo name it
	}
	var errs []error
	if n, err := killRootProcesses(r); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		t.Errorf("%d processes were still running in the root %s at the end of the test; killed them", n, r)
	}
	if err := unmountBelow(r); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("release the root %s: %v", r, err)
	}
}

// killRootProcesses kills every process whose root directory is r or
// below it, waits for each to end, and returns how many it killed.
func killRootProcesses(r string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	inRoot := func(pid int) bool {
		link, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "root"))
		link = strings.TrimSuffix(link, " (deleted)")
		return err == nil && (link == r || strings.HasPrefix(link, r+"/"))
	}
	killed := 0
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !inRoot(pid) {
			continue
		}
		// Hold the process by a pidfd, and look again: the id may have
		// been reused between reading the link and opening it.
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // it has ended
		}
		if inRoot(pid) {
			if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err == nil {
				killed++
				if err := waitPidfd(fd, 10*time.Second); err != nil {
					errs = append(errs, fmt.Errorf("process %d: %w", pid, err))
				}
			}
		}
		unix.Close(fd)
	}
	return killed, errors.Join(errs...)
}

// waitPidfd waits, up to limit, for the process of the pidfd fd to end:
// the kernel makes the pidfd readable then.
func waitPidfd(fd int, limit time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(limit.Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("wait for it to end: %w", err)
		case n == 0:
			return fmt.Errorf("still running %v after SIGKILL", limit)
		}
		return nil
	}
}

// unmountBelow detaches every mount at r or below it, the deepest first.
func unmountBelow(r string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJOR:MINOR ROOT MOUNT-POINT ...; the fields escape
		// spaces and the like in octal.
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if p == r || strings.HasPrefix(p, r+"/") {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a
// path in /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
