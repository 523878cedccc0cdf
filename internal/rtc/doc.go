// Package rtc is what the WebRTC bridge's two ends share, on pion/webrtc:
// the API (a VP8-only media engine, the abs-capture-time and transport-cc
// header extensions, NACK, RTCP reports, TWCC feedback and GCC congestion
// control), the VP8 sending track that carries each frame's capture time,
// the receiving side that rebuilds frames from RTP, and a WHEP client.
//
// Capture time: every frame's first RTP packet carries the
// abs-capture-time header extension (the capture instant as a 64-bit NTP
// timestamp of the sender's wall clock), and the RTP timestamp is the
// capture time on the 90 kHz clock. The sender converts framebus.Now's
// monotonic capture time to wall-clock time when it sends; the receiver
// converts back with its own clocks. On one machine the two conversions
// cancel exactly (the same wall and monotonic clocks); across machines the
// result is as good as their clock synchronisation (NTP or PTP). RTCP
// sender reports carry the same mapping for the RTP timestamps, but only
// once a second and for the instant of the report, so a receiver would
// extrapolate; the header extension says it for every frame. Browsers read
// it too (requestVideoFrameCallback's captureTime).
//
// The package is pure Go; the VP8 codec itself is internal/vpx (cgo).
package rtc
