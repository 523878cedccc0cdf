// Package logx is the logging the libraries share (framebus/feed, capture,
// viewer, bench, internal/rtc): they take a *slog.Logger from their caller,
// nil meaning silent (Or), and hold back repeated messages in one place
// (Repeats). The transport (package framebus) never logs; the commands own
// the handler (internal/cli.Slog: zerolog underneath).
package logx

import (
	"log/slog"
	"time"
)

// Discard logs nothing.
var Discard = slog.New(slog.DiscardHandler)

// Or is l, or Discard when l is nil: what a library calls on the logger of
// its options before it uses it, so that nil is silent.
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return Discard
	}
	return l
}

// Repeats holds back a message that says again what the last one said:
// a wait for a producer, a transient error that goes on, a bus that keeps
// failing frames. The zero value has said nothing. It is not safe for
// concurrent use.
type Repeats struct {
	last string
	at   time.Time
	n    int
}

// Allow reports whether a message of kind key should go out now, and notes
// it if so: a key other than the last one always; the same key again only
// after every (never, when every <= 0).
func (r *Repeats) Allow(key string, every time.Duration) bool {
	now := time.Now()
	if key == r.last && (every <= 0 || now.Sub(r.at) < every) {
		r.n++
		return false
	}
	r.last, r.at, r.n = key, now, 0
	return true
}

// Every reports whether the nth occurrence (from 1) of something that goes
// on should be logged: the first, then every every-th (a bus that fails
// frame after frame is logged at the first and every 100th).
func Every(n, every int) bool { return n == 1 || (every > 0 && n%every == 0) }

// Said is the key of the last message let through ("" after Reset or
// before any).
func (r *Repeats) Said() string { return r.last }

// Held is how many messages of the last key were held back since it was
// let through.
func (r *Repeats) Held() int { return r.n }

// Reset forgets the last message: the next one goes out whatever it is.
func (r *Repeats) Reset() { *r = Repeats{} }
