package ui

import (
	"slices"
	"sync"

	"github.com/station-dev/station/station/localapi"
)

// model is the kiosk's in-memory copy of the station's state. The model
// goroutine applies the stream's events to it and marks what changed;
// the UI ticker takes the changes and draws them. It is safe for
// concurrent use.
type model struct {
	mu        sync.Mutex
	st        localapi.State
	index     map[string]int // slot name → index in st.Slots
	connected bool

	// What changed since the last take.
	dirty  map[string]struct{} // slots
	full   bool                // the whole state: redraw everything
	header bool                // work order, counts, run, links, operator
	alerts bool
	conn   bool // connected changed
	events int64
	// slotEvents counts the slot events applied: the drawer adapts its
	// rate to theirs.
	slotEvents int64

	// wake is signalled after every change, so the drawer draws the
	// first change at once and throttles the rest.
	wake chan struct{}
}

// change is what take hands to the UI: the changed parts, copied.
type change struct {
	full      bool
	state     localapi.State  // when full or header: the whole state (Slots only when full)
	slots     []localapi.Slot // changed slots, when not full
	header    bool
	alerts    []localapi.Alert // when alertsSet
	alertsSet bool
	conn      bool
	connected bool
}

func (c change) empty() bool {
	return !c.full && len(c.slots) == 0 && !c.header && !c.alertsSet && !c.conn
}

func newModel() *model {
	return &model{index: map[string]int{}, dirty: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

// changed wakes the drawer; call it with m.mu held or not.
func (m *model) changed() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// apply applies one event of the stream.
func (m *model) apply(ev localapi.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.changed()
	m.events++
	switch ev.Type {
	case localapi.EventState:
		if ev.State != nil {
			m.setState(*ev.State)
		}
		if !m.connected {
			m.connected, m.conn = true, true
		}
	case localapi.EventDisconnected:
		if m.connected {
			m.connected, m.conn = false, true
		}
	case localapi.EventSlot, localapi.EventAlert:
		if ev.Slot != nil {
			m.setSlot(*ev.Slot)
			m.slotEvents++
		}
		m.setExtras(ev.Counts, ev.Run, ev.Alerts, ev.Can, ev.Type == localapi.EventAlert)
	}
}

// setDisconnected marks the stream as broken (it ended without a
// "disconnected" event).
func (m *model) setDisconnected() {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.changed()
	if m.connected {
		m.connected, m.conn = false, true
	}
}

// setState replaces the whole state.
func (m *model) setState(st localapi.State) {
	st.Slots = slices.Clone(st.Slots)
	st.Alerts = slices.Clone(st.Alerts)
	m.st = st
	clear(m.index)
	for i, s := range st.Slots {
		m.index[s.Name] = i
	}
	clear(m.dirty)
	m.full, m.header, m.alerts = true, true, true
}

// mergeState applies the state a command answered: everything but the
// slots is taken as is; a slot only when it is newer than the model's (the
// stream may already have brought newer ones).
func (m *model) mergeState(st localapi.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.changed()
	if len(st.Slots) != len(m.st.Slots) {
		m.setState(st)
		return
	}
	for _, s := range st.Slots {
		if _, ok := m.index[s.Name]; !ok {
			m.setState(st)
			return
		}
	}
	for _, s := range st.Slots {
		m.setSlot(s)
	}
	slots := m.st.Slots
	st.Slots = slots
	if !slices.Equal(st.Alerts, m.st.Alerts) {
		m.alerts = true
	}
	st.Alerts = slices.Clone(st.Alerts)
	m.st = st
	m.header = true
}

// setOperator records who signed in.
func (m *model) setOperator(op *localapi.Operator) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.changed()
	m.st.Operator = op
	m.header = true
}

// setSlot records a slot's change, unless the model has a newer one.
func (m *model) setSlot(s localapi.Slot) {
	i, ok := m.index[s.Name]
	if !ok {
		m.index[s.Name] = len(m.st.Slots)
		m.st.Slots = append(m.st.Slots, s)
		m.full = true
		return
	}
	cur := m.st.Slots[i]
	if s.Seq < cur.Seq || s == cur {
		return
	}
	m.st.Slots[i] = s
	if !m.full {
		m.dirty[s.Name] = struct{}{}
	}
}

func (m *model) setExtras(counts *localapi.Counts, run localapi.RunState, alerts []localapi.Alert, can *localapi.Commands, alertsAlways bool) {
	if counts != nil && *counts != m.st.Counts {
		m.st.Counts = *counts
		m.header = true
	}
	if can != nil && *can != m.st.Can {
		m.st.Can = *can
		m.header = true
	}
	if run != "" && run != m.st.Run {
		m.st.Run = run
		m.header = true
	}
	if (alertsAlways || alerts != nil) && !slices.Equal(alerts, m.st.Alerts) {
		m.st.Alerts = slices.Clone(alerts)
		m.alerts = true
	}
}

// take returns what changed since the last take, and forgets it.
func (m *model) take() change {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := change{full: m.full, header: m.header || m.full, conn: m.conn, connected: m.connected}
	if c.full || c.header {
		c.state = m.st
		c.state.Slots = nil
		c.state.Alerts = nil
		if c.full {
			c.state.Slots = slices.Clone(m.st.Slots)
		}
	}
	if m.alerts || m.full {
		c.alerts, c.alertsSet = slices.Clone(m.st.Alerts), true
	}
	if !c.full && len(m.dirty) > 0 {
		c.slots = make([]localapi.Slot, 0, len(m.dirty))
		for name := range m.dirty {
			c.slots = append(c.slots, m.st.Slots[m.index[name]])
		}
	}
	clear(m.dirty)
	m.full, m.header, m.alerts, m.conn = false, false, false, false
	return c
}

// slot returns a slot's latest state.
func (m *model) slot(name string) (localapi.Slot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.index[name]
	if !ok {
		return localapi.Slot{}, false
	}
	return m.st.Slots[i], true
}

// operator returns who is signed in, or nil.
func (m *model) operator() *localapi.Operator {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Operator
}

// eventCount returns how many events the model applied.
func (m *model) eventCount() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.events
}

// slotEventCount returns how many slot events the model applied.
func (m *model) slotEventCount() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.slotEvents
}

// slots returns a copy of every slot's latest state.
func (m *model) slots() []localapi.Slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.st.Slots)
}
