package label

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

// fakeZebra is a raw-TCP label printer: it answers ~HS with its flags and
// records every job sent after the status query.
type fakeZebra struct {
	ln   net.Listener
	mu   sync.Mutex
	st   HostStatus
	jobs [][]byte
	got  chan struct{}
}

func newFakeZebra(t *testing.T) *fakeZebra {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeZebra{ln: ln, got: make(chan struct{}, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeZebra) set(st HostStatus) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

func (f *fakeZebra) received() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slicesClone(f.jobs)
}

func slicesClone(b [][]byte) [][]byte { return append([][]byte(nil), b...) }

func (f *fakeZebra) serve(c net.Conn) {
	defer c.Close()
	cmd := make([]byte, 3)
	if _, err := io.ReadFull(c, cmd); err != nil || string(cmd) != "~HS" {
		return
	}
	f.mu.Lock()
	st := f.st
	f.mu.Unlock()
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	reply := "\x02030," + b(st.PaperOut) + "," + b(st.Paused) + ",1245,000,0,0,0,000,0,0,0\x03\r\n" +
		"\x02001,0," + b(st.HeadUp) + ",0,0,2,6,0,00000000,1,000\x03\r\n" +
		"\x021234,0\x03\r\n"
	if _, err := io.WriteString(c, reply); err != nil {
		return
	}
	job, _ := io.ReadAll(c)
	if len(job) > 0 {
		f.mu.Lock()
		f.jobs = append(f.jobs, job)
		f.mu.Unlock()
		f.got <- struct{}{}
	}
}

func TestParseHostStatus(t *testing.T) {
	tests := []struct {
		reply string
		want  HostStatus
		bad   bool
	}{
		{"\x02030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,0,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n", HostStatus{}, false},
		{"\x02030,1,0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,0,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n", HostStatus{PaperOut: true}, false},
		{"\x02030,0,1,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,1,0,0,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n", HostStatus{Paused: true, HeadUp: true}, false},
		{"garbage", HostStatus{}, true},
	}
	for _, tc := range tests {
		got, err := ParseHostStatus([]byte(tc.reply))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseHostStatus(%q) = %+v, %v; want %+v, bad=%v", tc.reply, got, err, tc.want, tc.bad)
		}
	}
}

func TestTCPPrinter(t *testing.T) {
	tests := []struct {
		name    string
		st      HostStatus
		problem string
		words   string
	}{
		{"ready", HostStatus{}, "", ""},
		{"paper out", HostStatus{PaperOut: true}, ProblemPaperOut, "is out of paper: load a new roll"},
		{"head open", HostStatus{HeadUp: true}, ProblemHeadOpen, "close the print head"},
		{"paused", HostStatus{Paused: true}, ProblemPaused, "is paused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeZebra(t)
			f.set(tc.st)
			p := &TCPPrinter{Addr: f.ln.Addr().String(), Timeout: 5 * time.Second}
			l := testLabel("")
			err := p.Print(context.Background(), l)
			if tc.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				<-f.got
				if got := f.received(); len(got) != 1 || !bytes.Equal(got[0], ZPL(l)) {
					t.Errorf("printer received %q, want %q", got, ZPL(l))
				}
				return
			}
			var pe *PrinterError
			if !errors.As(err, &pe) || pe.Problem != tc.problem || pe.Printer != p.Addr || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("Print = %v, want PrinterError %q", err, tc.problem)
			}
			if got := f.received(); len(got) != 0 {
				t.Errorf("printer with %s received %q", tc.problem, got)
			}
		})
	}
}

func TestTCPPrinterNoAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := &TCPPrinter{Addr: addr, Timeout: 5 * time.Second}
	err = p.Print(context.Background(), testLabel(""))
	var pe *PrinterError
	if !errors.As(err, &pe) || pe.Problem != ProblemNoAnswer || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("Print = %v, want no answer", err)
	}

	// A listener that accepts but never answers ~HS.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		c, err := silent.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	p = &TCPPrinter{Addr: silent.Addr().String(), Timeout: 200 * time.Millisecond}
	if err := p.Print(context.Background(), testLabel("")); !errors.As(err, &pe) || pe.Problem != ProblemNoAnswer {
		t.Fatalf("Print to a silent printer = %v, want no answer", err)
	}
}

func TestQueueKeepsJobUntilPaperIsBack(t *testing.T) {
	f := newFakeZebra(t)
	f.set(HostStatus{PaperOut: true})
	q := &Queue{Printer: &TCPPrinter{Addr: f.ln.Addr().String()}, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	l1, l2 := testLabel(""), testLabel("")
	l2.Serial = "THERMO-000002"
	for _, l := range []jobs.Label{l1, l2} {
		err := q.Print(ctx, l)
		var pe *PrinterError
		if !errors.As(err, &pe) || pe.Problem != ProblemPaperOut || !pe.Kept || !strings.Contains(err.Error(), "the label is kept and printed when it is back") {
			t.Fatalf("Print = %v, want kept paper out", err)
		}
	}
	if ok, problem := q.Status(); ok || problem != ProblemPaperOut || q.Pending() != 2 {
		t.Fatalf("Status = %v %q, Pending = %d; want paper out, 2", ok, problem, q.Pending())
	}
	if err := q.Print(ctx, testLabel("nope")); err == nil || q.Pending() != 2 {
		t.Fatalf("unrenderable label: err %v, pending %d", err, q.Pending())
	}
	f.set(HostStatus{})
	for range 2 {
		select {
		case <-f.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("kept labels not printed after the paper came back (pending %d)", q.Pending())
		}
	}
	got := f.received()
	if len(got) != 2 || !bytes.Equal(got[0], ZPL(l1)) || !bytes.Equal(got[1], ZPL(l2)) {
		t.Fatalf("printer received %d jobs, want l1 then l2", len(got))
	}
	deadline := time.Now().Add(10 * time.Second)
	for q.Pending() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if ok, problem := q.Status(); !ok || q.Pending() != 0 {
		t.Errorf("after printing: Status = %v %q, Pending = %d", ok, problem, q.Pending())
	}
	// Now a fresh job goes straight through.
	if err := q.Print(ctx, testLabel("datamatrix")); err != nil {
		t.Fatal(err)
	}
	<-f.got
}

func TestCUPSPrinter(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	script := "#!/bin/sh\necho \"$@\" > " + rec + ".args\ncat > " + rec + ".in\n"
	lp := filepath.Join(dir, "lp")
	if err := os.WriteFile(lp, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &CUPSPrinter{Queue: "zebra1", Command: lp}
	l := testLabel("")
	if err := p.Print(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(rec + ".args")
	in, _ := os.ReadFile(rec + ".in")
	if string(args) != "-d zebra1 -o raw\n" || !bytes.Equal(in, ZPL(l)) {
		t.Errorf("lp got args %q input %q", args, in)
	}
	t.Setenv("PATH", dir+"/none")
	err := (&CUPSPrinter{Queue: "zebra1"}).Print(context.Background(), l)
	if err == nil || !strings.Contains(err.Error(), "lp is not installed") {
		t.Errorf("Print without lp = %v", err)
	}
}
