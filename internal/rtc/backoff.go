package rtc

import (
	"math/rand/v2"
	"time"
)

// Backoff is the pause between attempts to make a session again (a WHIP
// push, a whep: pull): from Min, doubling up to Max, each pause jittered by
// ±Jitter of itself so that clients that lost the same server do not come
// back in step. Reset after a session that worked.
type Backoff struct {
	Min, Max time.Duration
	Jitter   float64 // a fraction, 0 to 1
	next     time.Duration
}

// The reconnection pauses of framebus push and the whep: source: 0.5 s,
// 1 s, 2 s, 4 s, then 5 s, each ±25%.
const (
	RetryMin    = 500 * time.Millisecond
	RetryMax    = 5 * time.Second
	RetryJitter = 0.25
)

// NewBackoff is the reconnection backoff (RetryMin to RetryMax, ±RetryJitter).
func NewBackoff() *Backoff { return &Backoff{Min: RetryMin, Max: RetryMax, Jitter: RetryJitter} }

// Next is the pause before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.next < b.Min {
		b.next = b.Min
	}
	d := b.next
	b.next = min(2*b.next, b.Max)
	if b.Jitter > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * b.Jitter * float64(d))
	}
	return d
}

// Reset starts again from Min.
func (b *Backoff) Reset() { b.next = 0 }
