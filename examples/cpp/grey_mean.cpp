// grey_mean - an OpenCV C++ analysis of a framebus bus, zero-copy: each frame is held
// (libframebus, fb_frame_hold), wrapped in a cv::Mat over the bus's own memory (no copy),
// converted to grey and measured; one line per frame:
//
//   frame seq=<n> size=<w>x<h> format=<fourcc> mean=<grey mean> held=<1|0> valid=<1|0>
//
//   grey_mean <bus> [--dir DIR] [--frames N] [--timeout MS]
//
// Build: make (pkg-config opencv4 framebus). A bus of 2 slots allows no holds (the cap is
// slot_count - 2): the frame is then used as a plain zero-copy view, valid for about a frame
// period, and checked afterwards (valid=0: the producer came back to the slot meanwhile and
// the result is thrown away). Exit status: 0 after N frames or the end of the stream.
#include <framebus/libframebus.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// The consumer as a C++ object: closed (holds released, entry left) by its destructor.
class Consumer {
public:
	Consumer(const char *name, const fb_consumer_opts &o)
	{
		err_ = fb_consumer_open(name, &o, &c_);
	}
	~Consumer() { fb_consumer_close(c_); }
	Consumer(const Consumer &) = delete;
	Consumer &operator=(const Consumer &) = delete;
	int error() const { return err_; }
	fb_consumer *get() const { return c_; }

private:
	fb_consumer *c_ = nullptr;
	int err_ = 0;
};

// A hold released when it goes out of scope.
class HoldGuard {
public:
	HoldGuard(fb_consumer *c, fb_hold &h, bool held) : c_(c), h_(h), held_(held) {}
	~HoldGuard()
	{
		if (held_)
			fb_hold_release(c_, &h_);
	}

private:
	fb_consumer *c_;
	fb_hold &h_;
	bool held_;
};

std::string fourcc(uint32_t f)
{
	char s[5] = {char(f), char(f >> 8), char(f >> 16), char(f >> 24), 0};
	return s;
}

// A cv::Mat header over the frame's first plane (no copy: the bus's read-only memory,
// hence the const_cast; nothing here writes to it), and the conversion code to grey.
bool wrap(const fb_format &f, const uint8_t *data, cv::Mat &m, int &to_grey)
{
	void *p = const_cast<uint8_t *>(data) + f.plane_offset[0];
	size_t step = f.plane_stride[0];
	int h = int(f.height), w = int(f.width);
	switch (f.pixel_format) {
	case FRAMEBUS_FOURCC_AB24: m = cv::Mat(h, w, CV_8UC4, p, step); to_grey = cv::COLOR_RGBA2GRAY; return true;
	case FRAMEBUS_FOURCC_RGB3: m = cv::Mat(h, w, CV_8UC3, p, step); to_grey = cv::COLOR_RGB2GRAY; return true;
	case FRAMEBUS_FOURCC_BGR3: m = cv::Mat(h, w, CV_8UC3, p, step); to_grey = cv::COLOR_BGR2GRAY; return true;
	case FRAMEBUS_FOURCC_YUYV: m = cv::Mat(h, w, CV_8UC2, p, step); to_grey = cv::COLOR_YUV2GRAY_YUYV; return true;
	case FRAMEBUS_FOURCC_GREY:
	case FRAMEBUS_FOURCC_NV12:
	case FRAMEBUS_FOURCC_YU12: // the luma plane is the grey picture
		m = cv::Mat(h, w, CV_8UC1, p, step);
		to_grey = -1;
		return true;
	default: return false;
	}
}

} // namespace

int main(int argc, char **argv)
{
	const char *name = nullptr, *dir = nullptr;
	long frames = 30, timeout = 10000;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		if (a == "--dir" && i + 1 < argc)
			dir = argv[++i];
		else if (a == "--frames" && i + 1 < argc)
			frames = std::strtol(argv[++i], nullptr, 10);
		else if (a == "--timeout" && i + 1 < argc)
			timeout = std::strtol(argv[++i], nullptr, 10);
		else if (a[0] != '-' && name == nullptr)
			name = argv[i];
		else {
			std::fprintf(stderr, "usage: grey_mean <bus> [--dir DIR] [--frames N] [--timeout MS]\n");
			return 2;
		}
	}
	if (name == nullptr) {
		std::fprintf(stderr, "usage: grey_mean <bus> [--dir DIR] [--frames N] [--timeout MS]\n");
		return 2;
	}

	fb_consumer_opts o{};
	o.dir = dir;
	o.wait_ms = uint32_t(timeout); // the producer may start after us
	o.log = [](void *, int, const char *msg) { std::fprintf(stderr, "grey_mean: %s\n", msg); };
	Consumer c(name, o);
	if (c.error() != FB_OK)
		return 1; // the log said why
	fb_format fmt{};
	fb_consumer_format(c.get(), &fmt);

	for (long n = 0; n < frames;) {
		fb_frame f;
		int r = fb_consumer_next(c.get(), int(timeout), &f);
		if (r == FB_ERR_END_OF_STREAM)
			break;
		if (r == FB_ERR_INTERRUPTED)
			continue;
		if (r != FB_OK) {
			std::fprintf(stderr, "grey_mean: %s\n", fb_consumer_errmsg(c.get()));
			return 1;
		}
		if (f.generation_changed)
			fb_consumer_format(c.get(), &fmt); // a new size or format
		fb_hold h;
		bool held = fb_frame_hold(c.get(), &f, &h) == FB_OK;
		HoldGuard release(c.get(), h, held);
		cv::Mat view, grey;
		int to_grey;
		if (!wrap(fmt, f.data, view, to_grey)) {
			std::fprintf(stderr, "grey_mean: format %s is not supported\n", fourcc(fmt.pixel_format).c_str());
			return 1;
		}
		if (to_grey >= 0)
			cv::cvtColor(view, grey, to_grey); // reads the bus, writes our own Mat
		else
			grey = view; // the luma plane, still in the bus
		double mean = cv::mean(grey)[0];
		bool valid = held ? fb_hold_valid(c.get(), &h) : fb_frame_valid(c.get(), &f);
		std::printf("frame seq=%llu size=%ux%u format=%s mean=%.2f held=%d valid=%d\n",
			    (unsigned long long)f.seq, fmt.width, fmt.height, fourcc(fmt.pixel_format).c_str(), mean,
			    held, valid);
		std::fflush(stdout);
		n++;
	}
	return 0;
}
