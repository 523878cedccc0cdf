// Package vpx is a small cgo binding of libvpx's VP8 encoder and decoder
// (Debian's libvpx-dev, 1.12), for the WebRTC bridge: what framebus needs of
// them and nothing else, built with -tags framebus_webrtc and cgo.
//
// Why not pion/mediadevices' pkg/codec/vpx, which binds the same library:
// it cannot set the encoder's speed (VP8E_SET_CPUUSED) or threads, and at
// its defaults one 1280x720 frame costs 20 ms of a core here and a 1920x1080
// frame 40 ms, more than a frame period at 30 fps (this package: see
// BenchmarkEncode); it reconfigures the encoder on every frame; it copies
// every encoded frame twice into new slices and its decoder allocates a new
// picture per frame and cuts frames over 1 MiB silently.
//
// Memory: the encoder's input picture is C memory (Input), written by Go
// code; the encoded frame is copied into a Go buffer owned by the encoder.
// The decoder decodes from a Go slice and returns a view of its own C
// picture, valid until the next Decode: callers convert it into their frame
// slot in Go. No C code ever sees a framebus segment.
package vpx
