// Command testreport reads `go test -json` on its standard input and
// prints what `go test` prints without -v: the output of every failing
// test, a line per package (ok, FAIL or no test files), then the slowest
// tests and a closing count. scripts/test pipes the suite through it.
//
// Usage:
//
//	go test -json ./... | go run ./scripts/testreport [-slowest 10] [-json FILE]
//
// It exits 1 when a test or a package failed, or when the input held no
// test at all, so a pipeline that ran nothing does not pass.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// result is one finished test.
type result struct {
	pkg, test string
	elapsed   float64
}

func main() {
	slowest := flag.Int("slowest", 10, "how many of the slowest tests to list")
	save := flag.String("json", "", "also write the raw `go test -json` stream to this file")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go test -json ./... | testreport [-slowest N] [-json FILE]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	var in io.Reader = os.Stdin
	if *save != "" {
		f, err := os.Create(*save)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		in = io.TeeReader(os.Stdin, f)
	}
	failed, err := report(in, os.Stdout, *slowest)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testreport: %v\n", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// report prints the condensed report of the events read from r and
// tells whether anything failed (or nothing ran).
func report(r io.Reader, w io.Writer, slowest int) (failed bool, err error) {
	out := map[string][]line{} // package → its tests' output, in order
	var done []result
	passed, nfailed, skipped := 0, 0, 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		raw := sc.Bytes()
		var e event
		if json.Unmarshal(raw, &e) != nil || e.Action == "" {
			// Not an event: a build error printed as text. Show it.
			fmt.Fprintf(w, "%s\n", raw)
			continue
		}
		switch e.Action {
		case "output":
			if e.Test == "" {
				// Package-level lines: ok/FAIL summaries, build
				// failures, a panic or a timeout outside any test.
				if !strings.HasPrefix(e.Output, "PASS\n") && !strings.HasPrefix(e.Output, "=== ") {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			out[e.Package] = append(out[e.Package], line{e.Test, e.Output})
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "fail" {
					failed = true
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				nfailed++
				failed = true
				if !strings.Contains(e.Test, "/") {
					// The top-level test's output holds its subtests'.
					fmt.Fprint(w, collect(out, e.Package, e.Test))
				}
			case "skip":
				skipped++
			}
			if !strings.Contains(e.Test, "/") {
				done = append(done, result{e.Package, e.Test, e.Elapsed})
				out[e.Package] = forget(out[e.Package], e.Test)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("read go test -json: %w", err)
	}
	sort.Slice(done, func(i, j int) bool { return done[i].elapsed > done[j].elapsed })
	if n := min(slowest, len(done)); n > 0 {
		fmt.Fprintf(w, "\nslowest %d tests:\n", n)
		for _, r := range done[:n] {
			fmt.Fprintf(w, "  %7.1fs  %s %s\n", r.elapsed, r.pkg, r.test)
		}
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", passed, nfailed, skipped)
	if passed+nfailed == 0 {
		fmt.Fprintln(w, "no test ran")
		failed = true
	}
	return failed, nil
}

// line is one line of a test's output.
type line struct{ test, text string }

// of reports whether a line of test (or of one of its subtests) is
// named by name.
func of(l line, test string) bool {
	return l.test == test || strings.HasPrefix(l.test, test+"/")
}

// collect returns the output of test and of its subtests, in the order
// go test printed it.
func collect(out map[string][]line, pkg, test string) string {
	var b strings.Builder
	for _, l := range out[pkg] {
		if of(l, test) {
			b.WriteString(l.text)
		}
	}
	return b.String()
}

// forget drops the output of test and its subtests.
func forget(lines []line, test string) []line {
	kept := lines[:0]
	for _, l := range lines {
		if !of(l, test) {
			kept = append(kept, l)
		}
	}
	return kept
}
