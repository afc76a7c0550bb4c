package thethings

import (
	"context"
	"time"
)

// taking is values on their way into a buffer, as prepare made them.
type taking struct {
	n      int
	values []Value
	geos   []Geo
	stamps []time.Time
	recs   []byte // as spool records
}

// buffer holds the values a Writer took and has not resolved, oldest
// first: in memory (memBuffer) or in a spool (spoolBuffer).
type buffer interface {
	// prepare readies values for put, outside the writer's lock.
	prepare(values []Value, geos []Geo, stamps []time.Time) (taking, error)
	// put takes t unless there is no room: then room is closed when there
	// may be some. The writer's lock is held.
	put(t taking) (ticket int64, room <-chan struct{}, err error)
	// commit waits until what put took with ticket is kept (durable). A
	// ticket of 0 is kept already: commit is not called.
	commit(ticket int64) error
	// next returns the next batch: up to k of the oldest values not yet in
	// one (a batch is done before the next is taken).
	next(k int) ([]Value, error)
	// done removes the n oldest values: they are resolved.
	done(n int) error
	// held is how many values it held when opened: a previous writer's.
	held() int
	// inFlight is how many of those a previous writer may have been
	// sending, to be read back before they are sent; it returns once no
	// request of that writer can still be carried out.
	inFlight(ctx context.Context) (int, error)
	// sending is called before each delivery step, which must end by the
	// time it returns (zero: no bound).
	sending() (time.Time, error)
	// close ends the buffer: errors for what it still held, and how many
	// values those errors report.
	close(cause error, cur *delivery) (errs []error, reported int)
}
