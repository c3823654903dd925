package daemon

import (
	"slices"
	"sync"
	"time"
)

// Limits on wrong PINs and badges. Each caller (the local API's client:
// its user, on the unix socket and on loopback TCP alike; see
// localapi.ConnContext) and each operator named in a request has
// its own count of wrong tries. The first pinFreeTries cost nothing; each
// one after them makes the next try wait, twice as long each time from
// pinFirstDelay up to pinMaxDelay; at pinLockAfter the count is locked
// until a supervisor signs in (see docs/local-api.md, "Wrong PINs").
const (
	pinFreeTries  = 5
	pinLockAfter  = 10
	pinFirstDelay = time.Second
	pinMaxDelay   = 5 * time.Minute
	// pinForget is how long after its last wrong try an unlocked count
	// starts again from zero: a few typos spread over a shift never add
	// up to a lock.
	pinForget = 15 * time.Minute
)

// pinGuard counts wrong PINs and badges per key ("client uid 1000",
// "operator Alice"). Its zero value is ready; now, when set, is its clock.
type pinGuard struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[string]*pinBucket
}

// pinBucket is one key's count.
type pinBucket struct {
	failures int
	last     time.Time // the last wrong try
	next     time.Time // no try is checked before this
	locked   bool
}

func (g *pinGuard) clock() time.Time {
	if g.now != nil {
		return g.now()
	}
	return time.Now()
}

// bucketLocked returns key's count, forgotten when its last wrong try is
// old and it is not locked. Call with g.mu held.
func (g *pinGuard) bucketLocked(key string, now time.Time) *pinBucket {
	if g.buckets == nil {
		g.buckets = map[string]*pinBucket{}
	}
	b := g.buckets[key]
	if b == nil {
		b = &pinBucket{}
		g.buckets[key] = b
	}
	if !b.locked && b.failures > 0 && now.Sub(b.last) > pinForget {
		*b = pinBucket{}
	}
	return b
}

// admit says whether a try under keys may be checked now: wait > 0 when
// one of them must still wait that long; locked when one of them is
// locked (only a supervisor's credential passes then).
func (g *pinGuard) admit(keys []string) (wait time.Duration, locked bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock()
	for _, k := range keys {
		b := g.bucketLocked(k, now)
		wait = max(wait, b.next.Sub(now))
		locked = locked || b.locked
	}
	return wait, locked
}

// fail records a wrong try under keys. It returns the keys this try
// locked and how long the next try must wait.
func (g *pinGuard) fail(keys []string) (lockedNow []string, wait time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clock()
	for _, k := range keys {
		b := g.bucketLocked(k, now)
		b.failures++
		b.last = now
		if b.failures >= pinFreeTries {
			b.next = now.Add(pinDelay(b.failures))
			wait = max(wait, pinDelay(b.failures))
		}
		if b.failures >= pinLockAfter && !b.locked {
			b.locked = true
			lockedNow = append(lockedNow, k)
		}
	}
	return lockedNow, wait
}

// pinDelay is the wait after the n-th wrong try in a row (n ≥
// pinFreeTries).
func pinDelay(n int) time.Duration {
	d := pinFirstDelay
	for i := pinFreeTries; i < n && d < pinMaxDelay; i++ {
		d *= 2
	}
	return min(d, pinMaxDelay)
}

// forget clears the counts of keys that are not locked: an operator's
// own count after they signed in.
func (g *pinGuard) forget(keys ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys {
		if b := g.buckets[k]; b != nil && !b.locked {
			delete(g.buckets, k)
		}
	}
}

// clearLocks clears the locked counts and returns their keys, sorted: a
// supervisor signed in.
func (g *pinGuard) clearLocks() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var locked []string
	for k, b := range g.buckets {
		if b.locked {
			locked = append(locked, k)
			delete(g.buckets, k)
		}
	}
	slices.Sort(locked)
	return locked
}
