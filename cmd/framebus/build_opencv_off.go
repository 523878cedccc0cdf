//go:build !framebus_opencv

package main

// hasOpenCV says whether this build has the OpenCV (gocv) parts: the file:PATH
// source. The tests use it to know what the binary they build can do.
const hasOpenCV = false
