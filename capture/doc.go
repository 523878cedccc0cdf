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
// such as "pattern" or "file:clip.mp4". This build has the synthetic test
// pattern ("pattern", pure Go, no allocation per frame). The names of the
// sources that a later build adds behind build tags (videotest, screen,
// camera, file:PATH) are known, so that asking for one gives an error that
// says it is not in this build rather than that it does not exist.
package capture
