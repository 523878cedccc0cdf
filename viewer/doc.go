// Package viewer is the consumers of a bus that people use: the preview
// window (framebus view), the web preview with MJPEG and WebRTC (view
// --http), motion and face detection (analyze) and recording (record).
// Every one reads through a framebus/feed.Feed in copy mode, so that no C
// code (OpenCV, libvpx) ever reads bus memory. docs/VIEWER.md says how and
// how fast.
//
// Build tags: OpenCV (gocv) needs -tags framebus_opencv and cgo, WebRTC
// needs framebus_webrtc too (libvpx, internal/vpx); make build sets both.
// A build without them keeps every exported name: the commands say what
// the build lacks (NotInBuildError) and /whep answers 501 with the reason.
//
// Every build:
//
//	options.go        the options of ServeHTTP (WebRTCOptions too), RunWindow, Analyze, Record
//	errors.go         the sentinels and error types
//	hub.go            Hub: the newest encoded picture, for any number of readers (MJPEG and VP8)
//	http.go           Server: the preview's page, /stream.mjpg, /frame.jpg, /stats, /viewer.json
//	limits.go         the HTTP server's bounds on connections
//	meter.go          rate and latency meters
//	whep_http.go      /whep in the Server: the WebRTC side's routes, or 501 and why not
//	whep_stats.go     the WebRTC side's numbers in /viewer.json and /stats (WebRTCStatus)
//	record.go         Record, and record --lossless (pure Go, Matroska)
//	space_*.go        free disk space for the recorder, per OS
//
// framebus_opencv (opencv_off.go without it):
//
//	convert_opencv.go Converter: every bus format to BGR
//	http_opencv.go    ServeHTTP: the web preview's JPEG encoder loop
//	window_opencv.go  RunWindow
//	analyze_opencv.go Analyze
//	record_opencv.go  record to MJPEG through OpenCV
//
// framebus_webrtc, framebus_opencv and cgo (whep_off.go without them): the
// WHEP server, a bridge from the bus to WebRTC viewers, built on
// internal/rtc (what it shares with capture's whep: and whip: sources) and
// internal/vpx:
//
//	whep_webrtc.go         the bridge: its options, its life, the encoder's bitrate
//	whep_encode_webrtc.go  the VP8 encoder loop: conversion to I420, keyframes on request
//	whep_http_webrtc.go    the routes of /whep and /whep/ID, CORS
//	whep_session_webrtc.go a viewer's session: offer to answer, admission, sending, its reports, its end
//	whep_stats_webrtc.go   the numbers of the bridge and of each session
//	push_webrtc.go         Push (framebus push): the bridge with one WHIP session it dials, made again
//
// Libraries log only through the *slog.Logger of their options (nil:
// nothing); the commands own the logger.
package viewer
