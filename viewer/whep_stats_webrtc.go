//go:build framebus_webrtc && framebus_opencv && cgo

package viewer

import (
	"slices"
	"time"

	"github.com/framebus/framebus/framebus"
	"github.com/framebus/framebus/framebus/feed"
)

// The numbers of /viewer.json's and /stats' webrtc object, which the page
// shows (whep_stats.go has their types).

// encoded counts a frame encoded and published: its size, whether a
// keyframe, the bridge's feed's counters, the conversion and encoding time
// and the bitrate asked.
func (b *webrtcBridge) encoded(w, h int, key bool, fs feed.Stats, took int64, target int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.st.Width, b.st.Height = w, h
	b.st.FramesEncoded++
	if key {
		b.st.Keyframes++
	}
	b.st.FramesDropped = fs.Dropped + fs.Discarded
	b.st.EncodeUS = float64(took) / 1e3
	b.st.TargetBitrate = target
}

// sentFrame notes a frame sent to a viewer: capture to sent.
func (b *webrtcBridge) sentFrame(captureNS int64) {
	b.mu.Lock()
	b.st.CaptureToSent = float64(framebus.Now()-captureNS) / 1e3
	b.mu.Unlock()
}

// Status is the bridge's and every session's state.
func (b *webrtcBridge) Status() *WebRTCStatus {
	b.mu.Lock()
	st := b.st
	st.Enabled = true
	st.Refused = b.refused
	ss := make([]*whepSession, 0, len(b.sessions))
	for _, s := range b.sessions {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	slices.SortFunc(ss, func(a, c *whepSession) int { return a.created.Compare(c.created) })
	now := time.Now()
	st.Viewers = len(ss)
	st.Sessions = make([]WebRTCViewer, 0, len(ss))
	for _, s := range ss {
		st.Sessions = append(st.Sessions, s.status(now))
	}
	return &st
}

// status is the session's numbers; the bitrate sent is measured over the
// time since the last measure, when that is a second or more.
func (s *whepSession) status(now time.Time) WebRTCViewer {
	v := WebRTCViewer{ID: s.id, Remote: s.remote, AgeS: now.Sub(s.created).Seconds(), State: s.peer.State().String(),
		FramesSent: s.sent.Load(), FramesDropped: s.dropped.Load(), KeyRequests: s.keyReqs.Load(), NACKs: s.nacks.Load()}
	if e := s.estimator.Load(); e != nil {
		v.TargetBitrate = (*e).GetTargetBitrate()
		v.Estimator = (*e).GetStats()
	}
	bytes := s.bytes.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if dt := now.Sub(s.rateAt); dt >= time.Second {
		s.bitrate = int(float64(bytes-s.rateBytes) * 8 / dt.Seconds())
		s.rateBytes, s.rateAt = bytes, now
	}
	v.Bitrate, v.RTTMS, v.Loss, v.PacketsLost = s.bitrate, s.rttMS, s.loss, s.lost
	return v
}
