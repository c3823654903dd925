package ui

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/station-dev/station/station/localapi"
)

// testController is an in-memory station daemon: a localapi.Controller
// whose state tests set, served by the real localapi handler.
type testController struct {
	mu    sync.Mutex
	st    localapi.State
	subs  map[*sub]struct{}
	calls []string
	logs  map[string][]localapi.LogLine
	rows  []localapi.DeviceRow
	pins  map[string]localapi.Operator
	seq   int64
	// logReads counts the reads of each device's log.
	logReads map[string]int
}

type sub struct {
	ch   chan localapi.Event
	done <-chan struct{}
}

var _ localapi.Controller = (*testController)(nil)

// newTestController returns a station with n slots, S01 ..., all empty.
func newTestController(n int) *testController {
	c := &testController{
		subs: map[*sub]struct{}{},
		logs: map[string][]localapi.LogLine{},
		pins: map[string]localapi.Operator{
			"1234": {Name: "Alice"},
			"9999": {Name: "Sam", Supervisor: true},
			"B-42": {Name: "Bob"},
		},
	}
	c.st = localapi.State{
		Station: "test-station",
		Run:     localapi.RunIdle,
		DMS:     localapi.Link{OK: true},
		Printer: localapi.Link{OK: true},
	}
	for i := range n {
		c.st.Slots = append(c.st.Slots, localapi.Slot{Name: fmt.Sprintf("S%02d", i+1), Status: localapi.SlotEmpty})
	}
	return c
}

func (c *testController) stateLocked() localapi.State {
	st := c.st
	st.Slots = slices.Clone(c.st.Slots)
	st.Alerts = slices.Clone(c.st.Alerts)
	st.Time = time.Now()
	fillCan(&st)
	return st
}

// fillCan says which commands the station takes, as the daemon does:
// an operator for the run's and the slots' commands, a supervisor for
// stop and override.
func fillCan(st *localapi.State) {
	yes := localapi.Allowed{OK: true}
	no := func(why string) localapi.Allowed { return localapi.Allowed{Why: why} }
	op := st.Operator
	sup := op != nil && op.Supervisor
	c := localapi.Commands{Load: yes, Start: yes, Pause: yes, Stop: yes}
	switch {
	case op == nil:
		c.Load, c.Start, c.Pause = no("sign in first"), no("sign in first"), no("sign in first")
	case st.WorkOrder == nil:
		c.Start = no("scan a work order first")
	case st.Run == localapi.RunRunning:
		c.Start = no("already running")
	}
	if op != nil && st.Run != localapi.RunRunning {
		c.Pause = no("not running")
	}
	switch {
	case !sup:
		c.Stop = no("needs a supervisor")
	case st.WorkOrder == nil:
		c.Stop = no("no work order is loaded")
	}
	st.Can = c
	for i := range st.Slots {
		sl := &st.Slots[i]
		failed := sl.Status == localapi.SlotFailed
		sc := localapi.SlotCommands{Retry: yes, Skip: yes, Override: yes, Reprint: yes}
		switch {
		case op == nil:
			sc.Retry, sc.Skip, sc.Reprint = no("sign in first"), no("sign in first"), no("sign in first")
		case !failed:
			sc.Retry = no("only a failed device is retried")
		}
		if op != nil && (sl.Status == localapi.SlotEmpty || sl.Status == localapi.SlotRunning) {
			sc.Skip = no("no board to skip")
		}
		switch {
		case !sup:
			sc.Override = no("needs a supervisor")
		case !failed:
			sc.Override = no("only a failed device in its slot is accepted")
		}
		if op != nil && sl.Status != localapi.SlotPassed {
			sc.Reprint = no("no label was printed for this board")
		}
		sl.Can = sc
	}
}

// broadcastLocked sends ev to every watcher, waiting for slow ones.
func (c *testController) broadcastLocked(ev localapi.Event) {
	for s := range c.subs {
		select {
		case s.ch <- ev:
		case <-s.done:
		}
	}
}

// update changes the state and sends it whole.
func (c *testController) update(f func(st *localapi.State)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.st)
	st := c.stateLocked()
	c.broadcastLocked(localapi.Event{Type: localapi.EventState, State: &st, Time: st.Time})
}

// setSlot changes one slot and sends a slot event; it returns its Seq.
func (c *testController) setSlot(s localapi.Slot) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	s.Seq = c.seq
	for i := range c.st.Slots {
		if c.st.Slots[i].Name == s.Name {
			c.st.Slots[i] = s
		}
	}
	st := c.stateLocked()
	for _, x := range st.Slots {
		if x.Name == s.Name {
			s = x
		}
	}
	c.broadcastLocked(localapi.Event{Type: localapi.EventSlot, Slot: &s, Counts: &st.Counts, Run: st.Run, Alerts: st.Alerts, Can: &st.Can, Time: time.Now()})
	return s.Seq
}

func (c *testController) called() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *testController) record(call string) {
	c.calls = append(c.calls, call)
}

// State returns the state now.
func (c *testController) State(context.Context) localapi.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

// Watch starts with the state, then every change, until ctx ends.
func (c *testController) Watch(ctx context.Context) <-chan localapi.Event {
	s := &sub{ch: make(chan localapi.Event, 64), done: ctx.Done()}
	c.mu.Lock()
	st := c.stateLocked()
	s.ch <- localapi.Event{Type: localapi.EventState, State: &st, Time: st.Time}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		delete(c.subs, s)
		close(s.ch)
		c.mu.Unlock()
	}()
	return s.ch
}

// changeLocked sends the whole state after a command.
func (c *testController) changeLocked() {
	st := c.stateLocked()
	c.broadcastLocked(localapi.Event{Type: localapi.EventState, State: &st, Time: st.Time})
}

// Load knows WO-1 only.
func (c *testController) Load(_ context.Context, ref string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("load " + ref)
	id := strings.TrimPrefix(ref, "WO:")
	if id != "WO-1" {
		return fmt.Errorf("work order %s is not known to the DMS: check the number on the work order sheet: %w", id, localapi.ErrNotFound)
	}
	c.st.WorkOrder = &localapi.WorkOrder{ID: "WO-1", Product: "SENSE", ProductName: "Sense board", PartNumber: "PN-100", BundleVersion: "1.4.2", BundleTag: "release", Quantity: 100}
	c.st.Run = localapi.RunReady
	c.changeLocked()
	return nil
}

func (c *testController) needOperatorLocked(what string) error {
	if c.st.Operator == nil {
		return fmt.Errorf("sign in before you %s: tap Sign in: %w", what, localapi.ErrSignIn)
	}
	return nil
}

// Start needs an operator.
func (c *testController) Start(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("start")
	if err := c.needOperatorLocked("start"); err != nil {
		return err
	}
	c.st.Run = localapi.RunRunning
	c.changeLocked()
	return nil
}

// Pause pauses a running station.
func (c *testController) Pause(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("pause")
	if c.st.Run != localapi.RunRunning {
		return fmt.Errorf("the station is not running: %w", localapi.ErrState)
	}
	c.st.Run = localapi.RunPaused
	c.changeLocked()
	return nil
}

// supervisorLocked checks a supervisor's own credential, as the daemon
// does. Call with c.mu held.
func (c *testController) supervisorLocked(sup localapi.Credential, what string) error {
	op, ok := c.pins[sup.PIN+sup.Badge]
	switch {
	case sup.PIN+sup.Badge == "":
		return fmt.Errorf("a supervisor must type their own PIN to %s: %w", what, localapi.ErrSupervisor)
	case !ok:
		return fmt.Errorf("this PIN or badge is not known: try again or ask a supervisor: %w", localapi.ErrWrongPIN)
	case !op.Supervisor:
		return fmt.Errorf("%s is not a supervisor: only a supervisor can %s: %w", op.Name, what, localapi.ErrSupervisor)
	}
	return nil
}

// Stop needs a supervisor's credential.
func (c *testController) Stop(_ context.Context, sup localapi.Credential) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("stop")
	if err := c.supervisorLocked(sup, "stop the work order"); err != nil {
		return err
	}
	c.st.Run = localapi.RunIdle
	c.changeLocked()
	return nil
}

// Retry records the call.
func (c *testController) Retry(_ context.Context, slot string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("retry " + slot)
	return nil
}

// Skip records the call.
func (c *testController) Skip(_ context.Context, slot string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("skip " + slot)
	return nil
}

// Override needs a supervisor's credential; the slot turns overridden.
func (c *testController) Override(_ context.Context, slot, reason string, sup localapi.Credential) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("override " + slot + " " + reason)
	if err := c.supervisorLocked(sup, "accept a failed device"); err != nil {
		return err
	}
	for i := range c.st.Slots {
		if c.st.Slots[i].Name == slot {
			c.seq++
			c.st.Slots[i].Status, c.st.Slots[i].Reason, c.st.Slots[i].Seq = localapi.SlotOverridden, "accepted: "+reason, c.seq
		}
	}
	c.changeLocked()
	return nil
}

// Reprint records the call.
func (c *testController) Reprint(_ context.Context, slot string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("reprint " + slot)
	return nil
}

// LabelPNG answers a small white label for any slot; it is no command,
// so it is not recorded.
func (c *testController) LabelPNG(_ context.Context, slot string) ([]byte, error) {
	return testLabelPNG, nil
}

// SignIn knows the PINs and badges of c.pins.
func (c *testController) SignIn(_ context.Context, req localapi.SignInRequest) (localapi.Operator, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	op, ok := c.pins[req.PIN+req.Badge]
	if !ok {
		return localapi.Operator{}, fmt.Errorf("this PIN or badge is not known: try again or ask a supervisor: %w", localapi.ErrWrongPIN)
	}
	op.Since = time.Now()
	c.st.Operator = &op
	c.changeLocked()
	return op, nil
}

// SignOut signs out.
func (c *testController) SignOut(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Operator = nil
	c.changeLocked()
	return nil
}

// Devices filters c.rows by work order, device and result.
func (c *testController) Devices(_ context.Context, q localapi.DeviceQuery) ([]localapi.DeviceRow, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("devices " + q.WorkOrder + "|" + q.Device + "|" + q.Result)
	var out []localapi.DeviceRow
	for _, r := range c.rows {
		if (q.WorkOrder == "" || r.WorkOrder == q.WorkOrder) &&
			(q.Device == "" || strings.Contains(r.Device, q.Device) || strings.Contains(r.Serial, q.Device)) &&
			(q.Result == "" || r.Result == q.Result) {
			out = append(out, r)
		}
	}
	return out, nil
}

// DeviceLog returns c.logs[device], and counts the reads.
func (c *testController) DeviceLog(_ context.Context, device string) ([]localapi.LogLine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logReads == nil {
		c.logReads = map[string]int{}
	}
	c.logReads[device]++
	l, ok := c.logs[device]
	if !ok {
		return nil, fmt.Errorf("device %s has no log: %w", device, localapi.ErrNotFound)
	}
	return l, nil
}

// Export writes one line per selected device.
func (c *testController) Export(ctx context.Context, q localapi.DeviceQuery, w io.Writer) error {
	rows, err := c.Devices(ctx, q)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(w, "{\"device\":%q,\"result\":%q}\n", r.Device, r.Result); err != nil {
			return err
		}
	}
	return nil
}

// ExportSigned writes a tar of two files: the rows' CSV and a manifest.
func (c *testController) ExportSigned(ctx context.Context, q localapi.DeviceQuery, w io.Writer) error {
	rows, err := c.Devices(ctx, q)
	if err != nil {
		return err
	}
	var csv strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&csv, "%s,%s\n", r.Device, r.Result)
	}
	tw := tar.NewWriter(w)
	for _, f := range []struct{ name, body string }{{"devices.csv", csv.String()}, {"transcripts/x.txt", "log\n"}, {"manifest.json", "{}\n"}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// daemon serves a controller's local API on a unix socket, as the station
// daemon does; it can be stopped and started again on the same socket.
type daemon struct {
	t    testing.TB
	c    *testController
	sock string
	srv  *http.Server
}

func startDaemon(t testing.TB, c *testController) *daemon {
	d := &daemon{t: t, c: c, sock: filepath.Join(t.TempDir(), "api.sock")}
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) start() {
	l, err := net.Listen("unix", d.sock)
	if err != nil {
		d.t.Fatal(err)
	}
	d.srv = &http.Server{Handler: localapi.NewHandler(d.c, localapi.HandlerOptions{Logger: slog.New(slog.DiscardHandler)})}
	go func(srv *http.Server) {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.t.Errorf("serve the local API: %v", err)
		}
	}(d.srv)
}

// stop closes the server and its event streams, as a daemon that exits.
func (d *daemon) stop() {
	if d.srv != nil {
		d.srv.Close()
		d.srv = nil
	}
}

func (d *daemon) client() *localapi.Client {
	cl, err := localapi.NewClient("unix:"+d.sock, "")
	if err != nil {
		d.t.Fatal(err)
	}
	return cl
}

// testLabelPNG is a small white label.
var testLabelPNG = func() []byte {
	img := image.NewGray(image.Rect(0, 0, 80, 40))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}()
