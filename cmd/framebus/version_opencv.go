//go:build framebus_opencv

package main

import "gocv.io/x/gocv"

func init() {
	addFeature("opencv", "OpenCV "+gocv.OpenCVVersion()+" (gocv "+gocv.Version()+"): the file: source, view, analyze, MJPEG record")
}
