//go:build framebus_media && cgo && linux

package main

func init() {
	addFeature("media", "pion/mediadevices drivers: camera (V4L2), screen (X11)")
}
