//go:build framebus_opencv

package capture

// Pixel shuffles of the file source that OpenCV has no conversion for.

// interleaveUV turns the U and V planes of I420 at the start of c (quarter
// planes, one after the other) into NV12's interleaved UV plane. uv is
// scratch of len(c) bytes.
func interleaveUV(c, uv []byte) {
	copy(uv, c)
	n := len(c) / 2
	u, v := uv[:n], uv[n:2*n]
	c = c[:2*n]
	for i := range n {
		c[2*i] = u[i]
		c[2*i+1] = v[i]
	}
}

// bgrToYUYV converts a w x h BGR image (rows of srcStride bytes) into YUYV
// (rows of dstStride bytes), BT.601 limited range: Y of each pixel, U and V
// of each pair from the pair's mean colour. w is even.
func bgrToYUYV(dst, src []byte, w, h, srcStride, dstStride int) {
	for y := range h {
		s := src[y*srcStride:][:3*w]
		d := dst[y*dstStride:][:2*w]
		for len(s) >= 6 && len(d) >= 4 {
			b0, g0, r0 := int(s[0]), int(s[1]), int(s[2])
			b1, g1, r1 := int(s[3]), int(s[4]), int(s[5])
			r, g, b := r0+r1, g0+g1, b0+b1
			d[0] = uint8((66*r0+129*g0+25*b0+128)>>8 + 16)
			d[1] = uint8((-38*r-74*g+112*b+256)>>9 + 128)
			d[2] = uint8((66*r1+129*g1+25*b1+128)>>8 + 16)
			d[3] = uint8((112*r-94*g-18*b+256)>>9 + 128)
			s, d = s[6:], d[4:]
		}
	}
}
