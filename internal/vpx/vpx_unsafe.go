//go:build framebus_webrtc && cgo

package vpx

// #cgo pkg-config: vpx
// #include <stdlib.h>
// #include <string.h>
// #include <vpx/vpx_encoder.h>
// #include <vpx/vpx_decoder.h>
// #include <vpx/vp8cx.h>
// #include <vpx/vp8dx.h>
//
// // vpx_codec_control_ is variadic: cgo cannot call it.
// static vpx_codec_err_t fb_ctl_int(vpx_codec_ctx_t *c, int id, int v) { return vpx_codec_control_(c, id, v); }
// static vpx_codec_err_t fb_ctl_uint(vpx_codec_ctx_t *c, int id, unsigned int v) { return vpx_codec_control_(c, id, v); }
// static vpx_codec_err_t fb_ctl_get_int(vpx_codec_ctx_t *c, int id, int *v) { return vpx_codec_control_(c, id, v); }
//
// static vpx_codec_err_t fb_enc_init(vpx_codec_ctx_t *c, vpx_codec_enc_cfg_t *cfg) {
// 	return vpx_codec_enc_init(c, vpx_codec_vp8_cx(), cfg, 0);
// }
// static vpx_codec_err_t fb_enc_default(vpx_codec_enc_cfg_t *cfg) {
// 	return vpx_codec_enc_config_default(vpx_codec_vp8_cx(), cfg, 0);
// }
// static vpx_codec_err_t fb_dec_init(vpx_codec_ctx_t *c, unsigned int threads) {
// 	vpx_codec_dec_cfg_t cfg = {0};
// 	cfg.threads = threads;
// 	return vpx_codec_dec_init(c, vpx_codec_vp8_dx(), &cfg, 0);
// }
//
// // One encoded frame: the packets of one vpx_codec_encode, their bytes
// // appended to out (of cap bytes); returns the bytes (more than cap: the
// // frame did not fit and nothing was copied past cap) and sets *key.
// static long fb_encode(vpx_codec_ctx_t *c, vpx_image_t *img, vpx_codec_pts_t pts, unsigned long dur,
// 		vpx_enc_frame_flags_t flags, unsigned char *out, long cap, int *key, vpx_codec_err_t *err) {
// 	*key = 0;
// 	*err = vpx_codec_encode(c, img, pts, dur, flags, VPX_DL_REALTIME);
// 	if (*err != VPX_CODEC_OK) return 0;
// 	long n = 0;
// 	vpx_codec_iter_t it = NULL;
// 	const vpx_codec_cx_pkt_t *pkt;
// 	while ((pkt = vpx_codec_get_cx_data(c, &it)) != NULL) {
// 		if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) continue;
// 		if (pkt->data.frame.flags & VPX_FRAME_IS_KEY) *key = 1;
// 		long sz = (long)pkt->data.frame.sz;
// 		if (n + sz <= cap) memcpy(out + n, pkt->data.frame.buf, sz);
// 		n += sz;
// 	}
// 	return n;
// }
// // Out-parameters of the calls, in C memory (Go locals whose address C
// // takes escape to the heap: an allocation per call).
// typedef struct { int key; vpx_codec_err_t err; int corrupt; vpx_codec_iter_t iter; } fb_scratch;
import "C"

import (
	"errors"
	"fmt"
	"image"
	"sync"
	"unsafe"
)

// Available says whether this build has the codec.
const Available = true

func codecErr(op string, ctx *C.vpx_codec_ctx_t, rc C.vpx_codec_err_t) error {
	msg := C.GoString(C.vpx_codec_err_to_string(rc))
	if ctx != nil {
		if d := C.vpx_codec_error_detail(ctx); d != nil {
			msg += ": " + C.GoString(d)
		}
	}
	return &Error{Op: op, Msg: msg}
}

// Encoder is a VP8 encoder of one picture size. Its methods are not safe for
// concurrent use, except SetBitrate and ForceKey.
type Encoder struct {
	ctx  *C.vpx_codec_ctx_t
	cfg  *C.vpx_codec_enc_cfg_t
	img  *C.vpx_image_t
	w, h int
	in   Picture
	out  []byte
	fps  float64

	sc *C.fb_scratch

	mu      sync.Mutex
	bitrate int  // wanted, bits per second
	applied int  // in the encoder's configuration
	key     bool // the next frame is a keyframe
	closed  bool
}

// NewEncoder makes an encoder of w x h pictures (both even, at least 16).
func NewEncoder(w, h int, o EncoderOptions) (*Encoder, error) {
	if w < 16 || h < 16 || w%2 != 0 || h%2 != 0 || w > 16384 || h > 16384 {
		return nil, &Error{Op: "new encoder", Msg: fmt.Sprintf("picture of %dx%d: want even sizes from 16x16 to 16384x16384", w, h)}
	}
	o = o.withDefaults()
	e := &Encoder{w: w, h: h, fps: o.FPS}
	e.cfg = (*C.vpx_codec_enc_cfg_t)(C.calloc(1, C.sizeof_vpx_codec_enc_cfg_t))
	e.sc = (*C.fb_scratch)(C.calloc(1, C.sizeof_fb_scratch))
	e.ctx = (*C.vpx_codec_ctx_t)(C.calloc(1, C.sizeof_vpx_codec_ctx_t))
	fail := func(err error) (*Encoder, error) {
		e.free(false)
		return nil, err
	}
	if rc := C.fb_enc_default(e.cfg); rc != C.VPX_CODEC_OK {
		return fail(codecErr("config", nil, rc))
	}
	cfg := e.cfg
	cfg.g_w, cfg.g_h = C.uint(w), C.uint(h)
	cfg.g_threads = C.uint(o.Threads)
	cfg.g_timebase.num, cfg.g_timebase.den = 1, 90000 // RTP's video clock
	cfg.g_lag_in_frames = 0                           // no look-ahead: a frame in, a frame out
	cfg.g_error_resilient = C.VPX_ERROR_RESILIENT_DEFAULT
	cfg.g_pass = C.VPX_RC_ONE_PASS
	cfg.rc_end_usage = C.VPX_CBR
	// Under the target the rate control drops frames (Encode returns none)
	// rather than overshoot: a frame rate that falls is better than a link
	// that fills.
	cfg.rc_dropframe_thresh = 30
	cfg.rc_resize_allowed = 0
	cfg.rc_min_quantizer, cfg.rc_max_quantizer = 2, 63
	cfg.rc_undershoot_pct, cfg.rc_overshoot_pct = 100, 15
	cfg.rc_buf_initial_sz, cfg.rc_buf_optimal_sz, cfg.rc_buf_sz = 500, 600, 1000
	cfg.kf_mode = C.VPX_KF_AUTO
	cfg.kf_min_dist = 0
	cfg.kf_max_dist = C.uint(o.KeyInterval)
	e.bitrate = o.Bitrate
	cfg.rc_target_bitrate = C.uint(max(1, o.Bitrate/1000))
	e.applied = o.Bitrate
	if rc := C.fb_enc_init(e.ctx, cfg); rc != C.VPX_CODEC_OK {
		C.free(unsafe.Pointer(e.ctx))
		e.ctx = nil
		return fail(codecErr("init encoder", nil, rc))
	}
	for _, c := range []struct {
		id C.int
		v  int
	}{
		{C.VP8E_SET_CPUUSED, o.Speed},
		{C.VP8E_SET_STATIC_THRESHOLD, 1},
		{C.VP8E_SET_NOISE_SENSITIVITY, 0},
		{C.VP8E_SET_TOKEN_PARTITIONS, partitions(o.Threads)},
		{C.VP8E_SET_MAX_INTRA_BITRATE_PCT, o.MaxKeyPct},
	} {
		if rc := C.fb_ctl_int(e.ctx, c.id, C.int(c.v)); rc != C.VPX_CODEC_OK {
			return fail(codecErr("control", e.ctx, rc))
		}
	}
	e.img = C.vpx_img_alloc(nil, C.VPX_IMG_FMT_I420, C.uint(w), C.uint(h), 32)
	if e.img == nil {
		return fail(&Error{Op: "new encoder", Msg: "out of memory for the input picture"})
	}
	e.in = e.picture(e.img)
	base := uintptr(unsafe.Pointer(e.img.planes[0]))
	e.in.UOff, e.in.VOff = int(uintptr(unsafe.Pointer(e.img.planes[1]))-base), int(uintptr(unsafe.Pointer(e.img.planes[2]))-base)
	e.in.Buf = unsafe.Slice((*byte)(unsafe.Pointer(e.img.planes[0])), e.in.VOff+len(e.in.V))
	e.out = make([]byte, 0, max(64<<10, w*h/2))
	return e, nil
}

// partitions is VP8's token partitions (log2) for a number of threads.
func partitions(threads int) int {
	switch {
	case threads >= 8:
		return 3
	case threads >= 4:
		return 2
	case threads >= 2:
		return 1
	}
	return 0
}

// picture makes the Go view of a vpx image's planes.
func (e *Encoder) picture(img *C.vpx_image_t) Picture {
	return viewOf(img, e.w, e.h)
}

func viewOf(img *C.vpx_image_t, w, h int) Picture {
	ys, cs := int(img.stride[0]), int(img.stride[1])
	ch := (h + 1) / 2
	return Picture{
		Y: unsafe.Slice((*byte)(unsafe.Pointer(img.planes[0])), ys*(h-1)+w), YStride: ys,
		U: unsafe.Slice((*byte)(unsafe.Pointer(img.planes[1])), cs*(ch-1)+(w+1)/2), V: unsafe.Slice((*byte)(unsafe.Pointer(img.planes[2])), int(img.stride[2])*(ch-1)+(w+1)/2),
		CStride: cs, Width: w, Height: h,
	}
}

// Size is the encoder's picture size.
func (e *Encoder) Size() (w, h int) { return e.w, e.h }

// Input is the picture the next Encode encodes: write the frame into it
// (I420, BT.601 limited range). Its planes are the encoder's C memory,
// valid until Close.
func (e *Encoder) Input() *Picture { return &e.in }

// SetBitrate sets the target bitrate in bits per second, from the next
// frame on.
func (e *Encoder) SetBitrate(bps int) {
	e.mu.Lock()
	e.bitrate = max(bps, 10_000)
	e.mu.Unlock()
}

// Bitrate is the target bitrate set last.
func (e *Encoder) Bitrate() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bitrate
}

// ForceKey makes the next frame a keyframe.
func (e *Encoder) ForceKey() {
	e.mu.Lock()
	e.key = true
	e.mu.Unlock()
}

// ErrClosed is returned by the methods of a closed encoder or decoder.
var ErrClosed = errors.New("vpx: closed")

// Encode encodes the Input picture, captured at pts (90 kHz), and returns
// the VP8 frame (valid until the next Encode) and whether it is a keyframe.
// The frame is empty when the rate control dropped it (the bitrate is too
// low for the picture at this rate).
// It allocates nothing once the output buffer has grown to the largest
// frame.
func (e *Encoder) Encode(pts int64) (frame []byte, key bool, err error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, false, ErrClosed
	}
	force, bitrate := e.key, e.bitrate
	e.key = false
	e.mu.Unlock()
	// Reconfigure only on a change of more than 5% (vpx_codec_enc_config_set
	// is not free).
	if d := bitrate - e.applied; d*20 > e.applied || -d*20 > e.applied {
		e.cfg.rc_target_bitrate = C.uint(max(1, bitrate/1000))
		if rc := C.vpx_codec_enc_config_set(e.ctx, e.cfg); rc != C.VPX_CODEC_OK {
			return nil, false, codecErr("set bitrate", e.ctx, rc)
		}
		e.applied = bitrate
	}
	var flags C.vpx_enc_frame_flags_t
	if force {
		flags |= C.VPX_EFLAG_FORCE_KF
	}
	dur := C.ulong(90000 / max(e.fps, 1))
	for {
		out := e.out[:cap(e.out)]
		n := int(C.fb_encode(e.ctx, e.img, C.vpx_codec_pts_t(pts), dur, flags, (*C.uchar)(unsafe.Pointer(&out[0])), C.long(len(out)), &e.sc.key, &e.sc.err))
		if rc := e.sc.err; rc != C.VPX_CODEC_OK {
			return nil, false, codecErr("encode", e.ctx, rc)
		}
		if n <= len(out) {
			e.out = out[:n]
			return e.out, e.sc.key != 0, nil
		}
		// The frame is larger than the buffer: encode it again as a
		// keyframe into a buffer that fits (rare: the buffer holds half a
		// raw picture).
		e.out = make([]byte, 0, 2*n)
		flags |= C.VPX_EFLAG_FORCE_KF
	}
}

// Close releases the encoder.
func (e *Encoder) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.free(true)
	return nil
}

func (e *Encoder) free(inited bool) {
	if e.ctx != nil {
		if inited {
			C.vpx_codec_destroy(e.ctx)
		}
		C.free(unsafe.Pointer(e.ctx))
		e.ctx = nil
	}
	if e.img != nil {
		C.vpx_img_free(e.img)
		e.img = nil
	}
	if e.cfg != nil {
		C.free(unsafe.Pointer(e.cfg))
		e.cfg = nil
	}
	if e.sc != nil {
		C.free(unsafe.Pointer(e.sc))
		e.sc = nil
	}
	e.in = Picture{}
}

// Decoder is a VP8 decoder. Its methods are not safe for concurrent use.
type Decoder struct {
	ctx    *C.vpx_codec_ctx_t
	sc     *C.fb_scratch
	pic    Picture
	ycc    image.YCbCr
	closed bool
}

// NewDecoder makes a decoder using up to threads threads (0: 1).
func NewDecoder(threads int) (*Decoder, error) {
	d := &Decoder{ctx: (*C.vpx_codec_ctx_t)(C.calloc(1, C.sizeof_vpx_codec_ctx_t))}
	if rc := C.fb_dec_init(d.ctx, C.uint(max(threads, 1))); rc != C.VPX_CODEC_OK {
		C.free(unsafe.Pointer(d.ctx))
		return nil, codecErr("init decoder", nil, rc)
	}
	d.sc = (*C.fb_scratch)(C.calloc(1, C.sizeof_fb_scratch))
	return d, nil
}

// Decode decodes one VP8 frame. It returns the picture (a view of the
// decoder's memory, valid until the next Decode or Close; nil when the frame
// shows nothing) and whether the decoder marks it corrupted (a reference
// frame was lost: ask the sender for a keyframe). It allocates nothing.
func (d *Decoder) Decode(frame []byte) (pic *image.YCbCr, corrupt bool, err error) {
	if d.closed {
		return nil, false, ErrClosed
	}
	if len(frame) == 0 {
		return nil, false, &Error{Op: "decode", Msg: "empty frame"}
	}
	if rc := C.vpx_codec_decode(d.ctx, (*C.uint8_t)(unsafe.Pointer(&frame[0])), C.uint(len(frame)), nil, 0); rc != C.VPX_CODEC_OK {
		return nil, false, codecErr("decode", d.ctx, rc)
	}
	d.sc.corrupt, d.sc.iter = 0, nil
	C.fb_ctl_get_int(d.ctx, C.VP8D_GET_FRAME_CORRUPTED, &d.sc.corrupt)
	bad := d.sc.corrupt
	img := C.vpx_codec_get_frame(d.ctx, &d.sc.iter)
	if img == nil {
		return nil, bad != 0, nil
	}
	if img.fmt != C.VPX_IMG_FMT_I420 {
		return nil, false, &Error{Op: "decode", Msg: fmt.Sprintf("picture format %d, want I420", int(img.fmt))}
	}
	w, h := int(img.d_w), int(img.d_h)
	p := viewOf(img, w, h)
	d.ycc = image.YCbCr{Y: p.Y, Cb: p.U, Cr: p.V, YStride: p.YStride, CStride: p.CStride,
		SubsampleRatio: image.YCbCrSubsampleRatio420, Rect: image.Rect(0, 0, w, h)}
	return &d.ycc, bad != 0, nil
}

// Close releases the decoder.
func (d *Decoder) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	C.vpx_codec_destroy(d.ctx)
	C.free(unsafe.Pointer(d.ctx))
	C.free(unsafe.Pointer(d.sc))
	d.ctx, d.sc = nil, nil
	d.ycc = image.YCbCr{}
	return nil
}
