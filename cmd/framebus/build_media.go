//go:build framebus_media && cgo && linux

package main

// hasMedia says whether this build has the pion/mediadevices sources that
// need cgo: screen (X11) and camera (V4L2). videotest is in every build. The
// tests use it to know what the binary they build can do.
const hasMedia = true
