package label

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTCPPrinterStatus: Status asks ~HS and prints nothing.
func TestTCPPrinterStatus(t *testing.T) {
	f := newFakeZebra(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name    string
		st      HostStatus
		addr    string
		problem string // "" means ready
	}{
		{"ready", HostStatus{}, f.ln.Addr().String(), ""},
		{"paper out", HostStatus{PaperOut: true}, f.ln.Addr().String(), ProblemPaperOut},
		{"head open", HostStatus{HeadUp: true}, f.ln.Addr().String(), ProblemHeadOpen},
		{"paused", HostStatus{Paused: true}, f.ln.Addr().String(), ProblemPaused},
		{"nothing listening", HostStatus{}, closedAddr, ProblemNoAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.set(tc.st)
			err := (&TCPPrinter{Addr: tc.addr}).Status(context.Background())
			var pe *PrinterError
			switch {
			case tc.problem == "" && err != nil:
				t.Fatalf("Status: %v, want ready", err)
			case tc.problem != "" && (!errors.As(err, &pe) || pe.Problem != tc.problem):
				t.Fatalf("Status: %v, want the problem %q", err, tc.problem)
			}
		})
	}
	if jobs := f.received(); len(jobs) != 0 {
		t.Errorf("Status printed %d jobs", len(jobs))
	}
}

// TestCUPSPrinterStatus runs lpstat stand-ins answering as CUPS does.
func TestCUPSPrinterStatus(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, command, want string // want: part of the error; "" means ready
	}{
		{"idle", script("idle", `echo "printer $2 is idle.  enabled since Tue 01 Dec 2026"`), ""},
		{"disabled", script("disabled", `echo "printer $2 disabled since Tue 01 Dec 2026 -"; echo "	Paused"`), "paused"},
		{"no such queue", script("missing", `echo "lpstat: Invalid destination name in list \"$2\"." >&2; exit 1`), `no usable queue "zebra"`},
		{"no lpstat", filepath.Join(dir, "absent"), "apt install cups-client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&CUPSPrinter{Queue: "zebra", StatusCommand: tc.command}).Status(context.Background())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Status: %v, want ready", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Status: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDirSinkStatus(t *testing.T) {
	dir := t.TempDir()
	if err := (&DirSink{Dir: filepath.Join(dir, "new", "labels")}).Status(context.Background()); err != nil {
		t.Errorf("a folder that can be made: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if err := (&DirSink{Dir: filepath.Join(file, "labels")}).Status(context.Background()); err == nil {
		t.Error("a folder under a file: no error")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "new", "labels"))
	if len(entries) != 0 {
		t.Errorf("Status left files: %v", entries)
	}
}
