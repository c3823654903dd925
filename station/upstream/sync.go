package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/journal"
)

// MaxBatch is the most events one ingest call carries.
const MaxBatch = 500

// Defaults of SyncConfig.
const (
	DefaultMinBackoff = 200 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	DefaultPoll       = time.Second
)

// SyncConfig configures a Syncer. Its zero value is ready.
type SyncConfig struct {
	// Batch is how many events one call sends: default and at most
	// MaxBatch.
	Batch int
	// MinBackoff and MaxBackoff bound the wait between retries, which
	// doubles per failure with full jitter. Defaults 200 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often Run looks for new events when nobody calls
	// Notify; default 1 s.
	Poll time.Duration
	// Logger receives a line per change of state (DMS away, DMS back),
	// not per retry; nil discards.
	Logger *slog.Logger
}

// SyncStatus is how the upstream sync stands.
type SyncStatus struct {
	// Online reports that the last call to the DMS succeeded.
	Online bool `json:"online"`
	// Acked is the highest sequence number the DMS has stored; Last the
	// journal's last; Lag the events waiting between them.
	Acked int64 `json:"acked"`
	Last  int64 `json:"last"`
	Lag   int64 `json:"lag"`
	// LastError says, in an operator's words, why the last attempt
	// failed; empty when Online.
	LastError string `json:"last_error,omitempty"`
	// Since is when Online last changed (or the Syncer started).
	Since time.Time `json:"since"`
	// Refused counts the events the DMS refused for good (a 422 naming
	// the event): they stay in the journal, for QA, and are not sent
	// again unless marked to be ("station sync resend",
	// journal.Resend). LastRefused says which of them was refused last,
	// and why.
	Refused     int    `json:"refused,omitempty"`
	LastRefused string `json:"last_refused,omitempty"`
}

// state is what the sync is doing, for logging transitions once.
type state int

const (
	stateStarting    state = iota
	stateOnline            // the last call succeeded
	stateUnreachable       // jobs.ErrUnavailable
	stateRefused           // the key was refused
	stateRejected          // the DMS refused the batch
	stateJournal           // the journal could not be read or written
)

// Syncer pushes a journal's events to the DMS, store and forward: each
// batch after the journal's acknowledged cursor is sent, and the cursor
// moved when the DMS has stored it. The DMS stores each (station, seq)
// once, so a batch sent again after a timeout or a crash duplicates
// nothing. An event the DMS refuses for good is set aside
// (journal.Refuse); refused events marked to be sent again
// (journal.Resend) lead the next batch, and once the DMS has stored them
// the Syncer journals so (journal.Resent). It is safe for concurrent use.
type Syncer struct {
	c   *Client
	j   *journal.Journal
	cfg SyncConfig
	log *slog.Logger

	nudge       chan struct{}
	push        sync.Mutex // one batch in flight; guards warnedAhead
	warnedAhead bool       // the DMS holds later events than ours: said once

	mu       sync.Mutex
	st       SyncStatus
	state    state
	failures int  // consecutive failed attempts
	counted  bool // st.Refused was read from the journal
	// marked is the journal's last seq after the syncer last journaled
	// how the DMS took events (a refusal, events sent again): Flush
	// sends those records too.
	marked int64
}

// NewSyncer returns a Syncer that sends j's events through c.
func NewSyncer(c *Client, j *journal.Journal, cfg SyncConfig) *Syncer {
	if cfg.Batch <= 0 || cfg.Batch > MaxBatch {
		cfg.Batch = MaxBatch
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Syncer{
		c: c, j: j, cfg: cfg,
		log:   logger.With("dms", c.URL(), "station", c.Station()),
		nudge: make(chan struct{}, 1),
		st:    SyncStatus{Since: time.Now()},
	}
}

// Notify tells the Syncer that events were appended. It never blocks.
func (s *Syncer) Notify() {
	select {
	case s.nudge <- struct{}{}:
	default:
	}
}

// State returns how the sync stands.
func (s *Syncer) State() SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Run sends events until ctx is done, then returns nil. It never gives
// up on the DMS: while it is away, Run retries with backoff and the
// events wait in the journal. Start one Run per journal.
func (s *Syncer) Run(ctx context.Context) error {
	s.refresh(ctx)
	probed := false
	for ctx.Err() == nil {
		more, err := s.pushOnce(ctx, !probed)
		probed = true
		switch {
		case ctx.Err() != nil:
		case err != nil:
			s.sleep(ctx, s.backoff(), nil)
		case more:
			// Send the next batch right away.
		default:
			s.sleep(ctx, s.cfg.Poll, s.nudge)
		}
	}
	return nil
}

// Flush returns once every event appended before the call, and the
// records of refusals and of events sent again that the sync journals
// meanwhile, are stored by the DMS and acknowledged in the journal, or
// with ctx's error when ctx ends first. It sends batches itself, so it
// works with or without Run.
func (s *Syncer) Flush(ctx context.Context) error {
	target, err := s.j.SyncState(ctx)
	if err != nil {
		return fmt.Errorf("flush journal upstream: %w", err)
	}
	for {
		s.mu.Lock()
		want, st := max(target.Last, s.marked), s.st
		s.mu.Unlock()
		if st.Acked >= want {
			return nil
		}
		_, err := s.pushOnce(ctx, false)
		if cerr := ctx.Err(); cerr != nil {
			st := s.State()
			return fmt.Errorf("flush journal upstream: %d events not yet stored by the DMS (%s): %w", want-st.Acked, orNone(st.LastError), cerr)
		}
		if err != nil {
			s.sleep(ctx, s.backoff(), nil)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "no error yet"
	}
	return s
}

// pushOnce sends the next batch, if any, and moves the cursor. With
// probe, an empty journal is answered by an empty call, to learn whether
// the DMS and the key work. more reports that a full batch went and more
// may wait.
func (s *Syncer) pushOnce(ctx context.Context, probe bool) (more bool, err error) {
	s.push.Lock()
	defer s.push.Unlock()
	s.mu.Lock()
	counted := s.counted
	s.mu.Unlock()
	if !counted {
		s.refresh(ctx) // learns the events refused in earlier runs
	}
	js, err := s.j.SyncState(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.failed(stateJournal, fmt.Errorf("the station cannot read its own journal: %w", err))
		}
		return false, err
	}
	events, err := s.j.Unsynced(ctx, s.cfg.Batch)
	if err != nil {
		if ctx.Err() == nil {
			s.failed(stateJournal, fmt.Errorf("the station cannot read its own journal: %w", err))
		}
		return false, err
	}
	if len(events) == 0 && !probe {
		s.refresh(ctx)
		return false, nil
	}
	resp, err := s.c.ingest(ctx, dmsapi.IngestRequest{Events: events})
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		if seq, e, ok := refusedEvent(err, events); ok {
			// One event breaks the DMS's rules and will break them
			// however often it is sent: set it aside, so that the
			// events after it go up.
			if err := s.refuse(ctx, seq, e); err != nil {
				return false, err
			}
			return true, nil
		}
		s.refresh(ctx)
		s.failed(classify(err), err)
		return false, err
	}
	if len(events) == 0 {
		s.succeeded(ctx, 0)
		return false, nil
	}
	// Events at or below the cursor were refused once and marked to be
	// sent again (journal.Resend): they come first. Record that the DMS
	// has them now; the cursor is the newer events' business.
	i := slices.IndexFunc(events, func(e journal.Event) bool { return e.Seq > js.Acked })
	if i < 0 {
		i = len(events)
	}
	revived, fresh := events[:i], events[i:]
	if len(revived) > 0 {
		if err := s.resent(ctx, revived); err != nil {
			return false, err
		}
	}
	if len(fresh) == 0 {
		s.succeeded(ctx, len(events))
		return len(events) == s.cfg.Batch, nil
	}
	first, last := fresh[0].Seq, fresh[len(fresh)-1].Seq
	ackTo := last
	switch {
	case resp.LastSeq < last:
		// The DMS says it holds less than it was sent: trust it.
		s.log.Warn("the DMS stored less than the batch it accepted; sending the rest again",
			"batch_first", first, "batch_last", last, "dms_last_seq", resp.LastSeq)
		ackTo = resp.LastSeq
	case resp.LastSeq > last && !s.warnedAhead:
		s.warnedAhead = true
		s.log.Warn("the DMS already holds later events of this station than this journal has sent: was the station's journal replaced? events with the same sequence numbers are kept as the DMS first got them",
			"batch_last", last, "dms_last_seq", resp.LastSeq, "duplicates", resp.Duplicates)
	}
	if ackTo < first {
		err := fmt.Errorf("the DMS accepted events %d to %d but says it holds only up to %d", first, last, resp.LastSeq)
		s.failed(stateRejected, err)
		return false, err
	}
	if err := s.j.Ack(ctx, ackTo); err != nil {
		if ctx.Err() == nil {
			s.failed(stateJournal, fmt.Errorf("the station cannot record its sync cursor in its journal: %w", err))
		}
		return false, err
	}
	n := len(revived) + int(ackTo-first+1)
	s.succeeded(ctx, n)
	return len(events) == s.cfg.Batch || ackTo < last, nil
}

// refusedEvent reports whether err is the DMS refusing one event of the
// batch for good: a 422 that names the seq of an event sent.
func refusedEvent(err error, events []journal.Event) (int64, *Error, bool) {
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || e.Code != dmsapi.CodeInvalid || e.Seq <= 0 {
		return 0, nil, false
	}
	for _, ev := range events {
		if ev.Seq == e.Seq {
			return e.Seq, e, true
		}
	}
	return 0, nil, false
}

// refuse journals that the DMS refused event seq, and why, so that it is
// not sent again; it stays in the journal. The DMS's message names the
// field and never quotes a value or holds a secret; the journal redacts
// the work order's token besides.
func (s *Syncer) refuse(ctx context.Context, seq int64, e *Error) error {
	if err := s.j.Refuse(ctx, seq, e.Field, e.Message); err != nil {
		if ctx.Err() == nil {
			s.failed(stateJournal, fmt.Errorf("the station cannot record in its journal that the DMS refused event %d: %w", seq, err))
		}
		return err
	}
	s.log.Warn("the DMS refused an event for good; it stays in the journal, is not sent again unless marked to be (station sync resend), and the events after it are sent",
		"seq", seq, "field", e.Field, "reason", e.Message)
	s.mark(ctx)
	s.refresh(ctx)
	return nil
}

// resent journals that the DMS stored events sent again (revived by
// journal.Resend), so that they are not sent a third time.
func (s *Syncer) resent(ctx context.Context, events []journal.Event) error {
	seqs := make([]int64, len(events))
	for i, e := range events {
		seqs[i] = e.Seq
	}
	if err := s.j.Resent(ctx, seqs); err != nil {
		if ctx.Err() == nil {
			s.failed(stateJournal, fmt.Errorf("the station cannot record in its journal that the DMS stored events sent again: %w", err))
		}
		return err
	}
	s.log.Info("the DMS stored events it had refused before, sent again", "events", len(seqs), "first", seqs[0], "last", seqs[len(seqs)-1])
	s.mark(ctx)
	return nil
}

// mark notes that the syncer journaled how the DMS took events: the
// refused ones are counted again, and Flush waits for the record too.
func (s *Syncer) mark(ctx context.Context) {
	js, err := s.j.SyncState(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counted = false
	if err == nil {
		s.marked = max(s.marked, js.Last)
	}
}

// classify tells a failure's state.
func classify(err error) state {
	switch {
	case errors.Is(err, jobs.ErrUnavailable):
		return stateUnreachable
	case errors.Is(err, jobs.ErrUnauthorized):
		return stateRefused
	}
	return stateRejected
}

// refresh reads the journal's cursor and last sequence number and, the
// first time and after a refusal or a resend, the events that stay
// refused.
func (s *Syncer) refresh(ctx context.Context) {
	js, err := s.j.SyncState(ctx)
	if err != nil {
		return
	}
	s.mu.Lock()
	counted := s.counted
	s.setCounts(js)
	s.mu.Unlock()
	if counted {
		return
	}
	refused, err := s.j.Refused(ctx)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counted = true
	s.st.Refused, s.st.LastRefused = len(refused), ""
	if len(refused) > 0 {
		last := slices.MaxFunc(refused, func(a, b journal.Refusal) int { return a.Time.Compare(b.Time) })
		s.st.LastRefused = fmt.Sprintf("event %d: %s", last.Seq, last.Reason)
	}
}

// setCounts updates the counts; s.mu is held.
func (s *Syncer) setCounts(js journal.SyncState) {
	s.st.Acked, s.st.Last, s.st.Lag = js.Acked, js.Last, js.Lag
}

func (s *Syncer) succeeded(ctx context.Context, n int) {
	js, jerr := s.j.SyncState(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if jerr == nil {
		s.setCounts(js)
	}
	prev := s.state
	s.state, s.failures = stateOnline, 0
	if !s.st.Online {
		s.st.Online, s.st.Since = true, time.Now()
	}
	s.st.LastError = ""
	switch prev {
	case stateOnline:
	case stateStarting:
		s.log.Info("DMS reachable, syncing the journal", "synced", n, "waiting", s.st.Lag)
	default:
		s.log.Info("DMS back, syncing the journal again", "synced", n, "waiting", s.st.Lag)
	}
}

func (s *Syncer) failed(st state, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.state
	s.state = st
	s.failures++
	if s.st.Online || prev == stateStarting {
		s.st.Online, s.st.Since = false, time.Now()
	}
	msg := err.Error()
	if st == stateRefused {
		msg = fmt.Sprintf("the DMS refused the station's API key for station %s (%v): check the key file, or ask the DMS administrator for a station key made for station %s; the events stay in the journal and are sent once the key works",
			s.c.Station(), err, s.c.Station())
	}
	s.st.LastError = msg
	if prev == st {
		return // logged when the state began
	}
	waiting := s.st.Lag
	switch st {
	case stateUnreachable:
		s.log.Warn("DMS unreachable, events wait in the journal; retrying", "waiting", waiting, "err", err)
	case stateRefused:
		s.log.Error("DMS refused the station's key; retrying slowly", "waiting", waiting, "err", msg)
	case stateJournal:
		s.log.Error("journal sync stalled; retrying", "waiting", waiting, "err", err)
	default:
		s.log.Error("DMS refused a batch of events; retrying", "waiting", waiting, "err", err)
	}
}

// backoff returns the wait before the next attempt: full jitter over an
// exponential ceiling, the maximum while the key is refused.
func (s *Syncer) backoff() time.Duration {
	s.mu.Lock()
	n, st := s.failures, s.state
	s.mu.Unlock()
	if st == stateRefused {
		return s.cfg.MaxBackoff
	}
	ceil := s.cfg.MaxBackoff
	if n < 32 {
		if d := s.cfg.MinBackoff << max(n-1, 0); d > 0 && d < ceil {
			ceil = d
		}
	}
	return s.cfg.MinBackoff/2 + rand.N(ceil-s.cfg.MinBackoff/2+1)
}

// sleep waits for d, ctx's end, or a nudge (if nudge is not nil).
func (s *Syncer) sleep(ctx context.Context, d time.Duration, nudge <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-nudge:
	}
}
