package jobs

import "sync"

// writeBehind does writes in the order they are handed over, on its own
// goroutine, so that whoever hands them over goes on at once. add queues
// an item; the goroutine, started when an item arrives and ended when the
// queue is empty, hands every item queued meanwhile to write in one call;
// wait returns once every item added before it has been written. After a
// failed write nothing more is written: the items still queued are
// dropped, and add and wait return the error from then on. Its zero value
// needs write set; it is safe for concurrent use.
type writeBehind[T any] struct {
	write func([]T) error

	mu     sync.Mutex
	queued []T
	busy   chan struct{} // closed when the goroutine has written everything; nil when idle
	err    error
}

// add queues item for writing. It returns the error of a write that
// failed before, and then queues nothing.
func (w *writeBehind[T]) add(item T) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.queued = append(w.queued, item)
	if w.busy == nil {
		w.busy = make(chan struct{})
		go w.run(w.busy)
	}
	return nil
}

// run writes until the queue is empty or a write fails.
func (w *writeBehind[T]) run(busy chan struct{}) {
	for {
		w.mu.Lock()
		batch := w.queued
		w.queued = nil
		if len(batch) == 0 || w.err != nil {
			w.busy = nil
			w.mu.Unlock()
			close(busy)
			return
		}
		w.mu.Unlock()
		if err := w.write(batch); err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
		}
	}
}

// wait returns once every item added before the call is written, with the
// error of the first write that failed, if any.
func (w *writeBehind[T]) wait() error {
	w.mu.Lock()
	busy := w.busy
	w.mu.Unlock()
	if busy != nil {
		<-busy
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
