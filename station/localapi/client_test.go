package localapi

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// serveFunc serves a bare handler on a unix socket, as a daemon of
// another version or a broken one.
func serveFunc(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, ln, h, "unix:"+path)
}

func TestAnswersWithoutErrorBody(t *testing.T) {
	tests := []struct {
		status   int
		wantCode string
		wantIs   error
	}{
		{http.StatusNotFound, CodeNotFound, ErrNotFound},
		{http.StatusMethodNotAllowed, CodeInvalid, ErrInvalid},
		{http.StatusUnauthorized, CodeUnauthorized, ErrUnauthorized},
		{http.StatusServiceUnavailable, CodeUnavailable, ErrUnavailable},
		{http.StatusBadGateway, CodeInternal, nil},
	}
	for _, tt := range tests {
		s := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "plain text", tt.status)
		})
		_, err := newClient(t, s.addr, "").Start(t.Context())
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tt.status || ae.Code != tt.wantCode {
			t.Errorf("Start() answered %d in plain text = %#v, want code %q", tt.status, err, tt.wantCode)
			continue
		}
		if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
			t.Errorf("Start() answered %d = %v, want errors.Is %v", tt.status, err, tt.wantIs)
		}
		if ae.Message == "" {
			t.Errorf("Start() answered %d: empty message", tt.status)
		}
	}
}

// TestWatchQuietStream: a daemon that hangs (no event, no heartbeat) is
// taken for gone.
func TestWatchQuietStream(t *testing.T) {
	s := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("event: state\ndata: {\"type\":\"state\",\"state\":{\"station\":\"hung\"}}\n\n"))
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // and then nothing
	})
	c := newClient(t, s.addr, "")
	c.idle = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := c.Watch(ctx)
	if ev := next(t, ch); ev.Type != EventState {
		t.Fatalf("first event = %+v, want state", ev)
	}
	if ev := next(t, ch); ev.Type != EventDisconnected {
		t.Fatalf("event of a quiet stream = %+v, want %q", ev, EventDisconnected)
	}
	if ev := next(t, ch); ev.Type != EventState {
		t.Fatalf("event after reconnecting = %+v, want state", ev)
	}
}
