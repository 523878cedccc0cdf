// Package rtc is what the WebRTC pieces of framebus share, on pion/webrtc:
// the WHEP server (viewer/), the whep: source (a WHEP client) and the whip:
// source (a WHIP server) in capture/, and the WHIP client of framebus push
// (viewer.Push). One of each:
//
//	api.go       Config (ICE servers, ports, timeouts, bitrates) and the API: a VP8-only media
//	             engine, abs-capture-time and transport-cc, NACK, RTCP reports, TWCC feedback,
//	             GCC congestion control at a sender
//	peer.go      Peer: one peer connection and its life, driven by a server (Answer) or by a
//	             client (Offer, Accept); the answer's checks, the connect timeout, the end once
//	server.go    what the servers share of HTTP: reading an SDP body, session IDs, the 201
//	sdp.go       CannotSendVideo: an offer that can never send video
//	whep.go      Session, a client's session (a Peer and its resource): DialWHEP, DialWHIP (bearer
//	             token), DELETE on Close, ICE restart by PATCH (RestartICE)
//	backoff.go   the reconnection backoff of push and the whep: source (0.5 s to 5 s, ±25%)
//	track.go     VideoTrack: the VP8 sending track that carries each frame's capture time
//	receiver.go  Receiver: a remote VP8 track's frames, rebuilt (assembler.go) with their capture times
//	clock.go     the clocks: framebus.Now, wall, NTP, RTP
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
