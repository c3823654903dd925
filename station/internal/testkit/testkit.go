// Package testkit holds the small helpers the station's tests share: a
// clock the test moves by hand and a buffer many goroutines may write.
// Only tests import it.
package testkit

import (
	"sync"
	"time"

	"github.com/station-dev/station/fixtures/proctest"
)

// Clock is a clock the test moves by hand. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; pass it where code takes func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Buffer is a bytes.Buffer that goroutines may write at once, as they may
// write os.Stderr: a command's progress and its logs, a server's handlers.
type Buffer = proctest.Buffer
