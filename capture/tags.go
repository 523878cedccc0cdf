package capture

// Build tags of the cgo parts (see the Makefile's TAGS):
//
//	framebus_opencv  OpenCV through gocv: the file: source
//	framebus_media   pion/mediadevices drivers that need cgo: camera (V4L2), screen (X11)
//	framebus_webrtc  the VP8 codec (libvpx) of whep:URL, a WebRTC stream received over WHEP
//
// Without them the package is pure Go: the pattern and videotest sources.
