package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secret = "tok_9f8Qz2LmX7vR4kP1sT6wY3"

func TestRedactData(t *testing.T) {
	secrets := []string{secret, "12345678"}
	tests := []struct {
		name        string
		in          string
		want        string
		wantChanged bool
	}{
		{"no secret", `{"a":"b","n":1}`, `{"a":"b","n":1}`, false},
		{"plain value", `{"token":"` + secret + `"}`, `{"token":"[redacted]"}`, true},
		{"inside a value", `{"err":"claim ` + secret + ` refused"}`, `{"err":"claim [redacted] refused"}`, true},
		{"escaped", `{"t":"\u0074ok_9f8Qz2LmX7vR4kP1sT6wY3"}`, `{"t":"[redacted]"}`, true},
		{"key", `{"` + secret + `":1}`, `{"[redacted]":1}`, true},
		{"number", `{"pin":12345678}`, `{"pin":"[redacted]"}`, true},
		{"nested", `{"a":[{"b":"x` + secret + `"}],"keep":3.25}`, `{"a":[{"b":"x[redacted]"}],"keep":3.25}`, true},
		{"no html escaping", `{"a":"<` + secret + `>"}`, `{"a":"<[redacted]>"}`, true},
		{"across syntax", `{"a":"12345","b":678}`, `{"a":"12345","b":678}`, false},
		{"key of an object", `{"tok_9f8Qz2LmX7vR4kP1sT6wY3":{}}`, `{"[redacted]":{}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := redactData(secrets, json.RawMessage(tt.in))
			if string(got) != tt.want || changed != tt.wantChanged {
				t.Errorf("redactData(%s) = %s, %v, want %s, %v", tt.in, got, changed, tt.want, tt.wantChanged)
			}
		})
	}
	// A secret that only appears across JSON syntax withholds the data.
	got, changed := redactData([]string{`","b":"`}, json.RawMessage(`{"a":"x","b":"y"}`))
	if string(got) != withheld || !changed {
		t.Errorf("redactData(secret across syntax) = %s, %v, want %s, true", got, changed, withheld)
	}
}

func TestRedactNeverStored(t *testing.T) {
	ctx := t.Context()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(ctx, path, testStation, logger)
	if err != nil {
		t.Fatal(err)
	}
	j.Redact("")
	j.Redact(secret)
	j.Redact(secret) // twice is harmless
	leaky := []Event{
		{Kind: KindStep, WorkOrder: "WO-" + secret, Slot: "S1", Device: "aa:01", Operator: "op " + secret,
			Step: "activate", Status: StatusFailed,
			Error: "claim with token " + secret + " refused",
			Data:  json.RawMessage(`{"request":{"token":"` + secret + `"},"escaped":"\u0074ok_9f8Qz2LmX7vR4kP1sT6wY3","` + secret + `":true}`)},
		{Kind: KindWorkOrder, WorkOrder: "WO-1", Step: "loaded", Status: StatusInfo,
			Data: json.RawMessage(`{"authorization":"` + secret + `"}`)},
	}
	got, err := j.Append(ctx, leaky...)
	if err != nil {
		t.Fatal(err)
	}
	stored := allEvents(t, j)
	for _, events := range [][]Event{got, stored} {
		raw, err := json.Marshal(events)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("events hold the secret: %s", raw)
		}
		if n := bytes.Count(raw, []byte(redacted)); n < 7 {
			t.Errorf("events hold %d %q, want one per leak (7): %s", n, redacted, raw)
		}
	}
	if got[0].Error != "claim with token [redacted] refused" {
		t.Errorf("Append().Error = %q, want the secret replaced", got[0].Error)
	}

	// A refused event names the bad value without the secret.
	_, err = j.Append(ctx, Event{Kind: Kind("step-" + secret), Status: StatusInfo})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Append(kind with secret) error = %v, want an error without the secret", err)
	}

	// Nothing on disk holds it, neither while open (database, WAL,
	// shared memory) nor after the WAL is checkpointed on close.
	files := []string{path, path + "-wal", path + "-shm"}
	checkFiles := func(when string) {
		t.Helper()
		for _, f := range files {
			b, err := os.ReadFile(f)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s: %s holds the secret", when, filepath.Base(f))
			}
		}
	}
	wal, err := os.ReadFile(path + "-wal")
	if err != nil || !bytes.Contains(wal, []byte("claim with token [redacted] refused")) {
		t.Fatalf("the WAL does not hold the redacted event (err %v): the file check would prove nothing", err)
	}
	checkFiles("open")
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	checkFiles("closed")

	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs hold the secret:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "secret redacted from a journal event"); n != 3 {
		t.Errorf("logs hold %d redaction warnings, want 3 (one per event):\n%s", n, logs.String())
	}
}

func TestRedactConcurrent(t *testing.T) {
	j := openTest(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			j.Redact(strings.Repeat("s", 20+i))
		}
	}()
	for range 20 {
		if _, err := j.Append(context.Background(), info("WO-1", "x")); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	got := mustAppend(t, j, Event{Kind: KindOperator, Error: strings.Repeat("s", 69), Status: StatusInfo})
	if got[0].Error != redacted {
		t.Errorf("Append().Error = %q, want the longest secret replaced whole", got[0].Error)
	}
}
