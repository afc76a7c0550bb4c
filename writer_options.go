package thethings

import (
	"time"
)

// Writer defaults.
const (
	defaultFlushInterval = time.Second
	defaultMaxBuffered   = 10000
	defaultSpoolLimit    = 256 << 20
)

// WriterOption configures a [Writer]. An invalid option makes
// [Client.NewWriter] return an error matching [ErrInvalidOption].
type WriterOption func(*writerConfig) error

type writerConfig struct {
	batchSize   int
	interval    time.Duration
	maxBuffered int
	writeOpts   []WriteOption
	onError     func(*WriteError)
	spoolDir    string
	spoolLimit  int64
	serverTime  bool
}

// WithBatchSize sets how many values go in one request: 1..1000, default 100.
// A full batch is sent at once.
func WithBatchSize(n int) WriterOption {
	return func(c *writerConfig) error {
		if n < 1 || n > maxBatchSize {
			return optionError("batch size %d out of range 1..%d", n, maxBatchSize)
		}
		c.batchSize = n
		return nil
	}
}

// WithFlushInterval sets how long a value may wait in the buffer for its
// batch to fill: default 1s. Zero disables timed flushes (values then go
// out when a batch is full, on Flush and on Close). Negative is invalid.
func WithFlushInterval(d time.Duration) WriterOption {
	return func(c *writerConfig) error {
		if d < 0 {
			return optionError("negative flush interval %s", d)
		}
		c.interval = d
		return nil
	}
}

// WithMaxBuffered bounds the values held in memory by the writer, including
// those being sent: default 10,000, at least the batch size. When the buffer
// is full, Add waits for room (or for its context to end). A spooled writer
// is bounded by [WithSpoolLimit] instead.
func WithMaxBuffered(n int) WriterOption {
	return func(c *writerConfig) error {
		if n < 1 {
			return optionError("max buffered %d must be positive", n)
		}
		c.maxBuffered = n
		return nil
	}
}

// WithWriteOptions applies write options (WithStore, WithBroadcast) to every
// request of the writer.
func WithWriteOptions(opts ...WriteOption) WriterOption {
	return func(c *writerConfig) error {
		c.writeOpts = append(c.writeOpts, opts...)
		return nil
	}
}

// WithErrorHandler sets a function called with every [*WriteError] of the
// writer: values the platform refused (a 400 in its envelope), and values
// that cannot be verified whose request's outcome is unknown; the same
// errors are also returned by the next Flush or Close. It is also called
// once when delivery pauses (see [Writer]), with a WriteError without
// Values (they are kept) whose Err says why. It runs on the writer's
// goroutine, which waits for it: it must not block for long and must not
// call Flush or Close.
func WithErrorHandler(f func(*WriteError)) WriterOption {
	return func(c *writerConfig) error {
		c.onError = f
		return nil
	}
}

// WithServerTimestamps leaves the Datetime of values added without one
// zero, so that the platform stamps them when it stores them. By default
// the writer stamps each such value at Add (UTC, milliseconds; see
// [Writer] for the clock), which lets it verify an ambiguous write instead of
// guessing: see [Writer]. Values without a Datetime cannot be verified. It
// cannot be combined with [WithSpool].
func WithServerTimestamps() WriterOption {
	return func(c *writerConfig) error {
		c.serverTime = true
		return nil
	}
}

// WithSpool keeps the writer's buffer in dir, on disk, instead of in
// memory: Add returns once its values are durable (concurrent Adds share
// one sync), and values leave the spool only once the platform is known to
// hold them. A writer opened again on the same dir, after Close or after
// the process died at any instant, sends every value accepted and not yet
// confirmed, exactly once, after a power cut too. The directory is created
// if needed (mode 0700) and belongs to the writer: a file in it that the
// writer did not make, a symlink, FIFO or device, a directory others may
// write in ([ErrInvalidOption]) and a second writer on the same dir while
// the first is open ([ErrSpoolLocked]) are errors, and so is a spool of
// another thing ([ErrSpoolForeign]). Where the system cannot lock the
// directory, WithSpool is refused ([ErrInvalidOption]). See
// [WithSpoolLimit] for its bound.
func WithSpool(dir string) WriterOption {
	return func(c *writerConfig) error {
		if dir == "" {
			return optionError("empty spool directory")
		}
		c.spoolDir = dir
		return nil
	}
}

// WithSpoolLimit bounds the bytes of values waiting in the spool: default
// 256 MiB, at least 64 KiB. When it is full, Add waits for room (or for its
// context to end).
func WithSpoolLimit(bytes int64) WriterOption {
	return func(c *writerConfig) error {
		if bytes < 64<<10 {
			return optionError("spool limit %d below 64 KiB", bytes)
		}
		c.spoolLimit = bytes
		return nil
	}
}
