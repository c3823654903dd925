package journal

import (
	"encoding/json"
	"reflect"
	"testing"
)

// st builds a step event of work order WO-1.
func st(slot, device, step string, status Status, opts ...func(*Event)) Event {
	e := Event{Kind: KindStep, WorkOrder: "WO-1", Slot: slot, Device: device, Step: step, Status: status}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func inWO(wo string) func(*Event) { return func(e *Event) { e.WorkOrder = wo } }
func failure(msg string) func(*Event) {
	return func(e *Event) { e.Error = msg }
}
func data(s string) func(*Event) { return func(e *Event) { e.Data = json.RawMessage(s) } }

// run is one step run: started, then its outcome.
func run(slot, device, step string, outcome Status, opts ...func(*Event)) []Event {
	return []Event{st(slot, device, step, StatusStarted, opts...), st(slot, device, step, outcome, opts...)}
}

// identify is how jobs journals it: started before the device is known.
func identify(slot, device string, opts ...func(*Event)) []Event {
	return []Event{st(slot, "", "identify", StatusStarted, opts...), st(slot, device, "identify", StatusPassed, opts...)}
}

func concat(parts ...[]Event) []Event {
	var out []Event
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// fullRun is a device passing the whole pipeline on slot S1.
func fullRun(device, serial string, opts ...func(*Event)) []Event {
	return concat(
		identify("S1", device, opts...),
		run("S1", device, "preflight", StatusPassed, opts...),
		run("S1", device, "flash", StatusPassed, opts...),
		run("S1", device, "verify", StatusPassed, opts...),
		run("S1", device, "activate", StatusPassed, append(opts, data(`{"serial":"`+serial+`","claims_left":9}`))...),
		run("S1", device, "lock", StatusPassed, opts...),
		run("S1", device, "label", StatusPassed, opts...),
		run("S1", device, "done", StatusPassed, opts...),
	)
}

var allSteps = []string{"identify", "preflight", "flash", "verify", "activate", "lock", "label", "done"}

func ones(steps ...string) map[string]int {
	m := map[string]int{}
	for _, s := range steps {
		m[s] = 1
	}
	return m
}

// deviceView is the part of DeviceState the table compares.
type deviceView struct {
	Slot          string
	Result        Result
	Passed        []string
	LastStep      string
	LastStatus    Status
	LastError     string
	Attempts      map[string]int
	Serial        string
	ActivateCount int
	DoneCount     int
}

func view(s DeviceState) deviceView {
	return deviceView{s.Slot, s.Result, s.Passed, s.LastStep, s.LastStatus, s.LastError, s.Attempts,
		s.Serial, s.ActivateCount, s.DoneCount}
}

func TestDeviceState(t *testing.T) {
	tests := []struct {
		name   string
		events []Event
		wo     string
		device string
		want   deviceView
	}{
		{
			name:   "passed path",
			events: fullRun("aa:01", "SN-0001"),
			want: deviceView{Slot: "S1", Result: ResultDone, Passed: allSteps, LastStep: "done", LastStatus: StatusPassed,
				Attempts: ones(allSteps...), Serial: "SN-0001", ActivateCount: 1, DoneCount: 1},
		},
		{
			name: "failed",
			events: concat(
				identify("S1", "aa:01"),
				run("S1", "aa:01", "preflight", StatusPassed),
				run("S1", "aa:01", "flash", StatusFailed, failure("The link to the device dropped.")),
			),
			want: deviceView{Slot: "S1", Result: ResultFailed, Passed: []string{"identify", "preflight"},
				LastStep: "flash", LastStatus: StatusFailed, LastError: "The link to the device dropped.",
				Attempts: ones("identify", "preflight", "flash")},
		},
		{
			name: "failed then retried and passed, on another slot",
			events: concat(
				identify("S1", "aa:01"),
				run("S1", "aa:01", "preflight", StatusPassed),
				run("S1", "aa:01", "flash", StatusFailed, failure("link lost")),
				fullRun("aa:01", "SN-0002", func(e *Event) {
					if e.Slot != "" {
						e.Slot = "S2"
					}
				}),
			),
			want: deviceView{Slot: "S2", Result: ResultDone, Passed: allSteps, LastStep: "done", LastStatus: StatusPassed,
				LastError: "link lost", Serial: "SN-0002", ActivateCount: 1, DoneCount: 1,
				Attempts: map[string]int{"identify": 2, "preflight": 2, "flash": 2, "verify": 1, "activate": 1,
					"lock": 1, "label": 1, "done": 1}},
		},
		{
			name: "interrupted after activating",
			events: concat(
				identify("S1", "aa:01"),
				run("S1", "aa:01", "preflight", StatusPassed),
				run("S1", "aa:01", "flash", StatusPassed),
				run("S1", "aa:01", "verify", StatusPassed),
				run("S1", "aa:01", "activate", StatusPassed, data(`{"serial":"SN-7"}`)),
				[]Event{st("S1", "aa:01", "lock", StatusStarted)},
			),
			want: deviceView{Slot: "S1", Result: ResultInterrupted,
				Passed:   []string{"identify", "preflight", "flash", "verify", "activate"},
				LastStep: "lock", LastStatus: StatusStarted, Serial: "SN-7", ActivateCount: 1,
				Attempts: ones("identify", "preflight", "flash", "verify", "activate", "lock")},
		},
		{
			name: "resumed after a crash, skipping what passed",
			events: concat(
				identify("S1", "aa:01"),
				run("S1", "aa:01", "preflight", StatusPassed),
				run("S1", "aa:01", "flash", StatusPassed),
				[]Event{st("S1", "aa:01", "verify", StatusStarted)},
				identify("S1", "aa:01"),
				run("S1", "aa:01", "preflight", StatusPassed),
				[]Event{st("S1", "aa:01", "flash", StatusSkipped, failure("passed in an earlier run"))},
				run("S1", "aa:01", "verify", StatusPassed),
				run("S1", "aa:01", "activate", StatusPassed, data(`{"serial":"SN-9"}`)),
			),
			want: deviceView{Slot: "S1", Result: ResultInProgress,
				Passed:   []string{"identify", "preflight", "flash", "verify", "activate"},
				LastStep: "activate", LastStatus: StatusPassed, Serial: "SN-9", ActivateCount: 1,
				Attempts: map[string]int{"identify": 2, "preflight": 2, "flash": 1, "verify": 2, "activate": 1}},
		},
		{
			name:   "skipped",
			events: []Event{st("S1", "aa:01", "flash", StatusSkipped, failure("quantity reached"))},
			want:   deviceView{Slot: "S1", Result: ResultSkipped, LastStep: "flash", LastStatus: StatusSkipped},
		},
		{
			name: "in progress between steps",
			events: concat(
				identify("S1", "aa:01"),
				run("S1", "aa:01", "preflight", StatusPassed),
			),
			want: deviceView{Slot: "S1", Result: ResultInProgress, Passed: []string{"identify", "preflight"},
				LastStep: "preflight", LastStatus: StatusPassed, Attempts: ones("identify", "preflight")},
		},
		{
			name: "failed retry after a pass stays failed",
			events: concat(
				identify("S1", "aa:01"),
				run("S1", "aa:01", "flash", StatusPassed),
				run("S1", "aa:01", "verify", StatusFailed, failure("hash differs")),
			),
			want: deviceView{Slot: "S1", Result: ResultFailed, Passed: []string{"identify", "flash"},
				LastStep: "verify", LastStatus: StatusFailed, LastError: "hash differs",
				Attempts: ones("identify", "flash", "verify")},
		},
		{
			name: "activated twice shows in the count",
			events: concat(
				fullRun("aa:01", "SN-1"),
				run("S1", "aa:01", "activate", StatusPassed, data(`{"serial":"SN-2"}`)),
			),
			want: deviceView{Slot: "S1", Result: ResultDone, Passed: allSteps, LastStep: "activate", LastStatus: StatusPassed,
				Serial: "SN-2", ActivateCount: 2, DoneCount: 1,
				Attempts: map[string]int{"identify": 1, "preflight": 1, "flash": 1, "verify": 1, "activate": 2,
					"lock": 1, "label": 1, "done": 1}},
		},
		{
			name: "two work orders on one device: the first",
			events: concat(
				fullRun("aa:01", "SN-A"),
				identify("S1", "aa:01", inWO("WO-2")),
				run("S1", "aa:01", "flash", StatusFailed, inWO("WO-2"), failure("flash refused")),
			),
			wo: "WO-1",
			want: deviceView{Slot: "S1", Result: ResultDone, Passed: allSteps, LastStep: "done", LastStatus: StatusPassed,
				Attempts: ones(allSteps...), Serial: "SN-A", ActivateCount: 1, DoneCount: 1},
		},
		{
			name: "two work orders on one device: the second",
			events: concat(
				fullRun("aa:01", "SN-A"),
				identify("S1", "aa:01", inWO("WO-2")),
				run("S1", "aa:01", "flash", StatusFailed, inWO("WO-2"), failure("flash refused")),
			),
			wo: "WO-2",
			want: deviceView{Slot: "S1", Result: ResultFailed, Passed: []string{"identify"}, LastStep: "flash",
				LastStatus: StatusFailed, LastError: "flash refused", Attempts: ones("identify", "flash")},
		},
		{
			name: "other devices and kinds do not count",
			events: concat(
				[]Event{info("WO-1", "loaded")},
				identify("S1", "aa:01"),
				identify("S2", "bb:02"),
				run("S2", "bb:02", "flash", StatusFailed),
				[]Event{{Kind: KindOperator, WorkOrder: "WO-1", Slot: "S1", Device: "aa:01", Step: "retry", Status: StatusInfo}},
			),
			want: deviceView{Slot: "S1", Result: ResultInProgress, Passed: []string{"identify"}, LastStep: "identify",
				LastStatus: StatusPassed, Attempts: ones("identify")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			j := openTest(t)
			mustAppend(t, j, tt.events...)
			wo, device := tt.wo, tt.device
			if wo == "" {
				wo = "WO-1"
			}
			if device == "" {
				device = "aa:01"
			}
			got, ok, err := j.Device(ctx, wo, device)
			if err != nil || !ok {
				t.Fatalf("Device(%s, %s) = %v, %v, want found", wo, device, ok, err)
			}
			if !reflect.DeepEqual(view(got), tt.want) {
				t.Errorf("Device(%s, %s) =\n%+v\nwant\n%+v", wo, device, view(got), tt.want)
			}
			if got.WorkOrder != wo || got.Device != device {
				t.Errorf("Device(%s, %s) names %s, %s", wo, device, got.WorkOrder, got.Device)
			}
			if got.First.After(got.Last) || got.FirstSeq > got.LastSeq {
				t.Errorf("Device(%s, %s) first %v (seq %d) after last %v (seq %d)", wo, device,
					got.First, got.FirstSeq, got.Last, got.LastSeq)
			}
			// Devices and Device agree.
			all, err := j.Devices(ctx, wo)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, d := range all {
				if d.Device == device {
					found = true
					if !reflect.DeepEqual(d, got) {
						t.Errorf("Devices(%s) has %+v, want Device's %+v", wo, d, got)
					}
				}
			}
			if !found {
				t.Errorf("Devices(%s) lacks %s", wo, device)
			}
		})
	}
}

func TestDeviceUnknown(t *testing.T) {
	j := openTest(t)
	mustAppend(t, j, fullRun("aa:01", "SN-1")...)
	for _, q := range []struct{ wo, device string }{{"WO-1", "zz:99"}, {"WO-2", "aa:01"}} {
		got, ok, err := j.Device(t.Context(), q.wo, q.device)
		if err != nil || ok {
			t.Errorf("Device(%s, %s) = %+v, %v, %v, want not found", q.wo, q.device, got, ok, err)
		}
	}
}

func TestLastOnSlot(t *testing.T) {
	ctx := t.Context()
	j := openTest(t)
	mustAppend(t, j, concat(
		fullRun("aa:01", "SN-1"),
		identify("S1", "bb:02"),
		run("S1", "bb:02", "preflight", StatusPassed),
		run("S1", "bb:02", "flash", StatusPassed),
		run("S1", "bb:02", "verify", StatusPassed),
		run("S1", "bb:02", "activate", StatusPassed, data(`{"serial":"SN-2"}`)),
		run("S1", "bb:02", "lock", StatusPassed),
		[]Event{st("S1", "bb:02", "label", StatusStarted)},
		// The station restarted; the locked device cannot be identified.
		run("S1", "", "identify", StatusFailed, failure("device is locked")),
		identify("S2", "cc:03", inWO("WO-2")),
	)...)
	tests := []struct {
		wo, slot   string
		wantOK     bool
		wantDevice string
		wantResult Result
	}{
		{"WO-1", "S1", true, "bb:02", ResultInterrupted},
		{"WO-1", "S2", false, "", ""},
		{"WO-2", "S2", true, "cc:03", ResultInProgress},
		{"WO-2", "S1", false, "", ""},
	}
	for _, tt := range tests {
		got, ok, err := j.LastOnSlot(ctx, tt.wo, tt.slot)
		if err != nil || ok != tt.wantOK || got.Device != tt.wantDevice || got.Result != tt.wantResult {
			t.Errorf("LastOnSlot(%s, %s) = %s %s, %v, %v, want %s %s, %v, nil", tt.wo, tt.slot,
				got.Device, got.Result, ok, err, tt.wantDevice, tt.wantResult, tt.wantOK)
		}
	}
	got, _, _ := j.LastOnSlot(ctx, "WO-1", "S1")
	if want := []string{"identify", "preflight", "flash", "verify", "activate", "lock"}; !reflect.DeepEqual(got.Passed, want) || got.Serial != "SN-2" {
		t.Errorf("LastOnSlot(WO-1, S1) = passed %v serial %s, want %v SN-2", got.Passed, got.Serial, want)
	}
}

func TestWorkOrder(t *testing.T) {
	ctx := t.Context()
	j := openTest(t)
	events := mustAppend(t, j, concat(
		[]Event{info("WO-1", "loaded")},
		fullRun("d1", "SN-1"),
		fullRun("d2", "SN-2"),
		identify("S2", "d3"),
		run("S2", "d3", "flash", StatusFailed),
		identify("S3", "d4"),
		[]Event{st("S3", "d4", "flash", StatusStarted)},
		identify("S4", "d5"),
		[]Event{st("S5", "d6", "preflight", StatusSkipped)},
		[]Event{info("WO-2", "loaded")},
		identify("S1", "d1", inWO("WO-2")),
		[]Event{info("WO-1", "completed")},
	)...)
	var wo1 []Event
	for _, e := range events {
		if e.WorkOrder == "WO-1" {
			wo1 = append(wo1, e)
		}
	}
	got, err := j.WorkOrder(ctx, "WO-1")
	if err != nil {
		t.Fatal(err)
	}
	want := WorkOrderState{ID: "WO-1", Devices: 6, Done: 2, Failed: 1, Interrupted: 1, InProgress: 1, Skipped: 1,
		Events: int64(len(wo1)), First: wo1[0].Time, Last: wo1[len(wo1)-1].Time}
	if got != want {
		t.Errorf("WorkOrder(WO-1) =\n%+v\nwant\n%+v", got, want)
	}

	devs, err := j.Devices(ctx, "WO-1")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, d := range devs {
		order = append(order, d.Device)
	}
	if want := []string{"d1", "d2", "d3", "d4", "d5", "d6"}; !reflect.DeepEqual(order, want) {
		t.Errorf("Devices(WO-1) order = %v, want %v", order, want)
	}

	unknown, err := j.WorkOrder(ctx, "WO-9")
	if err != nil || unknown != (WorkOrderState{ID: "WO-9"}) {
		t.Errorf("WorkOrder(WO-9) = %+v, %v, want zero counts", unknown, err)
	}

	list, err := j.WorkOrders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0] != want || list[1].ID != "WO-2" || list[1].Devices != 1 || list[1].InProgress != 1 || list[1].Events != 3 {
		t.Errorf("WorkOrders() = %+v, want WO-1 as above then WO-2 with 1 device in progress and 3 events", list)
	}
}
