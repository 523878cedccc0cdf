// Package capture holds the frame sources that feed a framebus producer.
//
// A Source knows its real frame format before the bus is created
// (Source.Format), and writes each frame straight into the producer's back
// slot (Source.Read into the slice that framebus.Producer.Begin returns),
// paced at its own rate:
//
//	src, err := capture.Open("pattern", capture.Config{Width: 640, Height: 480, FPS: 30})
//	...
//	p, err := framebus.Create("cam0", framebus.ProducerOptions{Format: src.Format()})
//	...
//	for {
//		buf, err := p.Begin()
//		...
//		n, captureNS, err := src.Read(ctx, buf)
//		if err != nil {
//			p.Abort()
//			break
//		}
//		p.Commit(n, framebus.Meta{CaptureNS: captureNS})
//	}
//
// Sources register themselves by name (Register); Open finds them by a spec
// such as "pattern" or "file:clip.mp4", each in its own file:
//
//	pattern           the synthetic test pattern, pure Go, no allocation per frame
//	videotest         pion/mediadevices' test driver (pure Go)
//	screen            the X11 screen through mediadevices (cgo, -tags framebus_media)
//	camera[:/dev/videoN]  V4L2 through mediadevices (cgo, -tags framebus_media)
//	file:PATH         a video file through gocv, looping (cgo, -tags framebus_opencv)
//	whep:URL          a WHEP (WebRTC) stream, VP8 decoded by libvpx (cgo, -tags framebus_webrtc)
//	whip:LISTEN       a WHIP server a browser pushes a camera to (cgo, -tags framebus_webrtc)
//	stdin, fd:N       raw frames or a YUV4MPEG2 stream from a pipe (pure Go)
//	rtsp://HOST/PATH  an RTSP camera through an ffmpeg child process (pure Go; ffmpeg at run time)
//	replay:FILE       a lossless recording (internal/recording), at its pace (pure Go)
//
// make build has them all. In a build without a tag the source's name is
// still known, and asking for it gives a NotInBuildError that names what the
// build needs, rather than an unknown-source error.
package capture
