package jobs

import (
	"slices"
	"sync"
	"time"

	"github.com/station-dev/station/flasher"
)

// SlotStatus is what a slot is doing, as the operator sees it.
type SlotStatus string

// Slot statuses.
const (
	SlotIdle    SlotStatus = "idle"
	SlotRunning SlotStatus = "running"
	SlotPassed  SlotStatus = "passed"
	SlotFailed  SlotStatus = "failed"
	SlotSkipped SlotStatus = "skipped"
)

// SlotState is the live state of one slot.
type SlotState struct {
	Slot    string             `json:"slot"`
	Status  SlotStatus         `json:"status"`
	Device  flasher.HardwareID `json:"device,omitempty"`
	Serial  string             `json:"serial,omitempty"`
	Step    Step               `json:"step,omitempty"`
	Attempt int                `json:"attempt,omitempty"`
	// Done and Total are the progress of the current step in bytes, when
	// it has any.
	Done  int64 `json:"done,omitempty"`
	Total int64 `json:"total,omitempty"`
	// Message says why the slot failed or was skipped, in an operator's
	// words.
	Message string `json:"message,omitempty"`
	// Waiting says what the slot waits for, while it waits: the DMS
	// being unreachable, for one.
	Waiting string    `json:"waiting,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Updated time.Time `json:"updated"`
}

// Bus holds the latest state of every slot and pushes changes to
// subscribers. Changes to one slot between two reads by a subscriber are
// coalesced into the latest, so a slow subscriber never slows a flash and
// always ends with the final state. Its zero value is ready to use.
type Bus struct {
	mu     sync.Mutex
	states map[string]SlotState
	order  []string
	subs   map[*Subscription]struct{}
}

// Subscription receives slot changes from a Bus.
type Subscription struct {
	bus     *Bus
	signal  chan struct{}
	pending map[string]SlotState
}

// Publish records a slot's new state and wakes subscribers.
func (b *Bus) Publish(s SlotState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.states == nil {
		b.states = map[string]SlotState{}
	}
	if _, ok := b.states[s.Slot]; !ok {
		b.order = append(b.order, s.Slot)
	}
	b.states[s.Slot] = s
	for sub := range b.subs {
		sub.pending[s.Slot] = s
		select {
		case sub.signal <- struct{}{}:
		default:
		}
	}
}

// Update applies f to a slot's current state and publishes the result.
func (b *Bus) Update(slot string, f func(*SlotState)) {
	b.mu.Lock()
	s, ok := b.states[slot]
	b.mu.Unlock()
	if !ok {
		s = SlotState{Slot: slot, Status: SlotIdle}
	}
	f(&s)
	s.Updated = time.Now()
	b.Publish(s)
}

// Snapshot returns every slot's latest state, in the order slots first
// appeared.
func (b *Bus) Snapshot() []SlotState {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SlotState, 0, len(b.order))
	for _, name := range b.order {
		out = append(out, b.states[name])
	}
	return out
}

// Subscribe returns a subscription that starts with every slot's current
// state pending.
func (b *Bus) Subscribe() *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	sub := &Subscription{bus: b, signal: make(chan struct{}, 1), pending: map[string]SlotState{}}
	for name, s := range b.states {
		sub.pending[name] = s
	}
	if len(sub.pending) > 0 {
		sub.signal <- struct{}{}
	}
	if b.subs == nil {
		b.subs = map[*Subscription]struct{}{}
	}
	b.subs[sub] = struct{}{}
	return sub
}

// C is signalled when changes are pending.
func (s *Subscription) C() <-chan struct{} { return s.signal }

// Changes returns the pending changes, one per slot, sorted by slot
// name, and clears them.
func (s *Subscription) Changes() []SlotState {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	out := make([]SlotState, 0, len(s.pending))
	for _, st := range s.pending {
		out = append(out, st)
	}
	clear(s.pending)
	slices.SortFunc(out, func(a, b SlotState) int {
		switch {
		case a.Slot < b.Slot:
			return -1
		case a.Slot > b.Slot:
			return 1
		}
		return 0
	})
	return out
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	delete(s.bus.subs, s)
}
