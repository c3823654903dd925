package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	const pkg = `"Package":"example.com/p"`
	ev := func(s string) string { return "{" + pkg + "," + s + "}\n" }
	cases := []struct {
		name       string
		in         string
		wantFailed bool
		want       []string // substrings of the report, in order
		notWant    []string
	}{
		{
			name: "passing",
			in: ev(`"Action":"run","Test":"TestA"`) +
				ev(`"Action":"output","Test":"TestA","Output":"=== RUN   TestA\n"`) +
				ev(`"Action":"output","Test":"TestA","Output":"noise\n"`) +
				ev(`"Action":"pass","Test":"TestA","Elapsed":1.5`) +
				ev(`"Action":"pass","Test":"TestB","Elapsed":3`) +
				ev(`"Action":"output","Output":"PASS\n"`) +
				ev(`"Action":"output","Output":"ok  \texample.com/p\t4.5s\n"`) +
				ev(`"Action":"pass","Elapsed":4.5`),
			want:    []string{"ok  \texample.com/p", "slowest 2 tests:", "TestB", "TestA", "2 passed, 0 failed, 0 skipped"},
			notWant: []string{"noise", "=== RUN"},
		},
		{
			name: "a failing subtest shows its test's output",
			in: ev(`"Action":"output","Test":"TestA","Output":"=== RUN   TestA\n"`) +
				ev(`"Action":"output","Test":"TestA/x","Output":"    a_test.go:9: got 3, want 4\n"`) +
				ev(`"Action":"fail","Test":"TestA/x","Elapsed":0.1`) +
				ev(`"Action":"output","Test":"TestA","Output":"--- FAIL: TestA (0.10s)\n"`) +
				ev(`"Action":"fail","Test":"TestA","Elapsed":0.1`) +
				ev(`"Action":"output","Output":"FAIL\texample.com/p\t0.2s\n"`) +
				ev(`"Action":"fail","Elapsed":0.2`),
			wantFailed: true,
			want:       []string{"got 3, want 4", "--- FAIL: TestA", "FAIL\texample.com/p", "0 passed, 2 failed"},
		},
		{
			name:       "a build error",
			in:         "# example.com/p\np.go:3:1: syntax error\n" + ev(`"Action":"output","Output":"FAIL\texample.com/p [build failed]\n"`) + ev(`"Action":"fail"`),
			wantFailed: true,
			want:       []string{"syntax error", "[build failed]"},
		},
		{
			name:       "nothing ran",
			in:         ev(`"Action":"output","Output":"?   \texample.com/p\t[no test files]\n"`) + ev(`"Action":"skip"`),
			wantFailed: true,
			want:       []string{"[no test files]", "no test ran"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			failed, err := report(strings.NewReader(tc.in), &b, 10)
			if err != nil {
				t.Fatal(err)
			}
			if failed != tc.wantFailed {
				t.Errorf("report() failed = %v, want %v", failed, tc.wantFailed)
			}
			out := b.String()
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("report lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("report holds %q:\n%s", w, out)
				}
			}
		})
	}
}
