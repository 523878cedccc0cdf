//go:build framebus_webrtc && framebus_opencv && cgo

package main

// hasWebRTC says whether this build has the WebRTC bridge: view --http's
// /whep and the whep: source. The tests use it to know what the binary
// they build can do.
const hasWebRTC = true
