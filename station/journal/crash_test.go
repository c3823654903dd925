package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/station-dev/station/fixtures/proctest"
)

// crashChildEnv names the journal the child process appends to.
const crashChildEnv = "JOURNAL_CRASH_CHILD_PATH"

// TestMain runs the test binary as TestCrashSafety's child process when
// that test starts it, and the tests otherwise.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
	}
	os.Exit(m.Run())
}

// crashChild is the child process of TestCrashSafety. It appends batches
// of one to four events for ever and prints the last seq of each batch
// once Append has returned, until it is killed.
func crashChild(path string) {
	j, err := Open(context.Background(), path, testStation, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	for b := 0; ; b++ {
		size := 1 + b%4
		batch := make([]Event, size)
		for i := range batch {
			batch[i] = Event{Kind: KindStep, WorkOrder: "WO-1", Slot: "S1", Device: fmt.Sprintf("dev-%d", b),
				Step: "flash", Status: StatusPassed,
				Data: json.RawMessage(fmt.Sprintf(`{"batch":%d,"size":%d,"i":%d}`, b, size, i))}
		}
		out, err := j.Append(context.Background(), batch...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(2)
		}
		fmt.Println(out[len(out)-1].Seq)
	}
}

// TestCrashSafety kills a process in the middle of appending (SIGKILL: no
// deferred code, no close) and checks that the journal it leaves is sound,
// numbered without gaps, holds every event the process saw committed and
// no part of a batch without the rest.
func TestCrashSafety(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	proctest.Isolate(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const killAfter = 300 // committed batches
	var committed int64
	lines := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		seq, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			continue // the test framework's own output
		}
		if seq <= committed {
			t.Errorf("child reported seq %d after %d", seq, committed)
		}
		committed = seq
		lines++
		if lines == killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if lines < killAfter {
		t.Fatalf("child committed %d batches and exited (%v), want it killed after %d:\n%s", lines, err, killAfter, stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL:\n%s", err, stderr.String())
	}

	j, err := Open(ctx, path, testStation, nil)
	if err != nil {
		t.Fatalf("Open() after the crash = %v", err)
	}
	defer j.Close()
	if err := j.IntegrityCheck(ctx); err != nil {
		t.Fatalf("IntegrityCheck() after the crash = %v", err)
	}
	events := allEvents(t, j)
	checkSeqs(t, events)
	if int64(len(events)) < committed {
		t.Fatalf("journal holds %d events after the crash, want every committed one (%d)", len(events), committed)
	}
	batches := map[int]int{}
	sizes := map[int]int{}
	for _, e := range events {
		b := dataInt(t, e, "batch")
		batches[b]++
		sizes[b] = dataInt(t, e, "size")
	}
	for b, n := range batches {
		if n != sizes[b] {
			t.Errorf("batch %d has %d of its %d events: a batch is all or nothing", b, n, sizes[b])
		}
	}
	t.Logf("child killed after reporting seq %d; journal holds %d events in %d batches", committed, len(events), len(batches))
	// The journal carries on where the dead process stopped.
	got := mustAppend(t, j, info("WO-1", "resumed"))
	if want := int64(len(events)) + 1; got[0].Seq != want {
		t.Errorf("Append() after the crash seq = %d, want %d", got[0].Seq, want)
	}
}
