package viewer

import (
	"context"
	"sync"
)

// Picture is one encoded frame (a JPEG) and where it came from.
type Picture struct {
	Seq, Generation     uint64
	CaptureNS, CommitNS int64 // the frame's (framebus.Now's clock)
	EncodedNS           int64 // when the picture was ready
	Width, Height       int
	Data                []byte
	Key                 bool // a video keyframe (the WebRTC side's VP8 frames)

	id   uint64 // the hub's count of pictures published, from 1
	refs int    // readers holding it, under Hub.mu
}

// ID numbers the pictures of a hub in the order published, from 1 (frame
// sequence numbers start again with a new producer; this never does).
func (p *Picture) ID() uint64 { return p.id }

// Hub hands the newest picture to any number of readers: latest-frame
// fan-out. One encoder publishes; each reader asks for a picture newer than
// the one it had and gets the newest there is, so a slow reader skips
// pictures and never builds a backlog; memory is the newest picture plus the
// ones readers are still sending. Publishing reuses the buffers of pictures
// no reader holds any more: no allocation per picture once warm.
type Hub struct {
	mu      sync.Mutex
	cond    sync.Cond
	cur     *Picture
	free    []*Picture
	waiting int  // readers blocked in Next
	closed  bool // no more pictures
	count   uint64
}

// NewHub makes an empty hub.
func NewHub() *Hub {
	h := &Hub{}
	h.cond.L = &h.mu
	return h
}

// Wanted reports whether a reader is waiting for the next picture: the
// encoder skips frames nobody would see.
func (h *Hub) Wanted() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiting > 0
}

// Publish makes a copy of p (and of its Data) the newest picture and wakes
// the readers.
func (h *Hub) Publish(p *Picture) {
	h.mu.Lock()
	var n *Picture
	if k := len(h.free); k > 0 {
		n, h.free = h.free[k-1], h.free[:k-1]
	} else {
		n = &Picture{}
	}
	data := append(n.Data[:0], p.Data...)
	*n = *p
	h.count++
	n.Data, n.refs, n.id = data, 0, h.count
	if old := h.cur; old != nil && old.refs == 0 {
		h.free = append(h.free, old)
	}
	h.cur = n
	h.mu.Unlock()
	h.cond.Broadcast()
}

// Close wakes every reader; Next returns nil from now on.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cond.Broadcast()
}

// Latest returns the newest picture (nil if none yet), held: give it back
// with Release.
func (h *Hub) Latest() *Picture {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil {
		h.cur.refs++
	}
	return h.cur
}

// Reader is one reader of a hub, bound to a context: when the context ends,
// Next returns nil. Close it when done.
type Reader struct {
	h    *Hub
	ctx  context.Context
	stop func() bool
}

// Reader makes a reader whose Next ends with ctx.
func (h *Hub) Reader(ctx context.Context) *Reader {
	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		h.mu.Unlock() // a waiter is in cond.Wait, or will see ctx.Err
		h.cond.Broadcast()
	})
	return &Reader{h: h, ctx: ctx, stop: stop}
}

// Close releases the reader's context watch.
func (r *Reader) Close() { r.stop() }

// Next waits for a picture published after the one whose ID is after (0:
// any), and returns the newest, held: give it back with Hub.Release. It
// returns nil when the reader's context ends or the hub closes. It
// allocates nothing.
func (r *Reader) Next(after uint64) *Picture {
	h := r.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waiting++
	defer func() { h.waiting-- }()
	for {
		if h.closed || r.ctx.Err() != nil {
			return nil
		}
		if p := h.cur; p != nil && p.id > after {
			p.refs++
			return p
		}
		h.cond.Wait()
	}
}

// Release gives back a picture from Next or Latest.
func (h *Hub) Release(p *Picture) {
	if p == nil {
		return
	}
	h.mu.Lock()
	p.refs--
	if p.refs == 0 && p != h.cur {
		h.free = append(h.free, p)
	}
	h.mu.Unlock()
}
