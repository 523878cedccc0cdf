//go:build framebus_opencv

package viewer

import (
	"errors"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

func blackFrame(w, h int) gocv.Mat {
	return gocv.NewMatWithSizeFromScalar(gocv.NewScalar(0, 0, 0, 0), h, w, gocv.MatTypeCV8UC3)
}

func TestMotionFindsTheMovingSquare(t *testing.T) {
	for _, size := range []image.Point{{320, 240}, {1920, 1080}} { // scaled down for the work
		d := NewMotion(0, 0)
		a, b := blackFrame(size.X, size.Y), blackFrame(size.X, size.Y)
		sq := image.Rect(size.X/2, size.Y/4, size.X/2+size.X/8, size.Y/4+size.X/8)
		gocv.Rectangle(&b, sq, color.RGBA{255, 128, 0, 0}, -1)
		if boxes := d.Detect(&a, nil); len(boxes) != 0 {
			t.Fatalf("%v: the first frame has boxes %v", size, boxes)
		}
		boxes := d.Detect(&b, nil)
		if len(boxes) != 1 {
			t.Fatalf("%v: boxes %v, want one around %v", size, boxes, sq)
		}
		got := image.Rect(boxes[0].X, boxes[0].Y, boxes[0].X+boxes[0].W, boxes[0].Y+boxes[0].H)
		if !sq.In(got.Inset(-1)) || got.Dx() > sq.Dx()+size.X/20 || got.Dy() > sq.Dy()+size.X/20 {
			t.Errorf("%v: box %v, want just around %v", size, got, sq)
		}
		// The same frame again: nothing moved.
		if boxes := d.Detect(&b, nil); len(boxes) != 0 {
			t.Errorf("%v: a still frame has boxes %v", size, boxes)
		}
		// A change smaller than the minimum area is not motion.
		c := b.Clone()
		gocv.Rectangle(&c, image.Rect(0, 0, 2, 2), color.RGBA{255, 255, 255, 0}, -1)
		if boxes := d.Detect(&c, nil); len(boxes) != 0 && size.X > 320 {
			t.Errorf("%v: a 2x2 change gave boxes %v", size, boxes)
		}
		a.Close()
		b.Close()
		c.Close()
		d.Close()
	}
}

// faceImage is gocv's sample face picture (images/face.jpg of the gocv
// module, in the module cache: no download).
func faceImage(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gocv.io/x/gocv").Output()
	if err != nil {
		t.Fatalf("go list -m gocv.io/x/gocv: %v", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "images", "face.jpg")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func needCascade(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultCascade); err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_BROWSER") != "" {
			t.Fatalf("%s is missing (make sysdeps installs opencv-data)", DefaultCascade)
		}
		t.Skipf("%s is missing (apt-get install opencv-data)", DefaultCascade)
	}
}

func TestFacesFindsTheFace(t *testing.T) {
	needCascade(t)
	img := gocv.IMRead(faceImage(t), gocv.IMReadColor)
	defer img.Close()
	d, err := NewFaces("")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// At the picture's size and scaled up to 1080p (worked on scaled down).
	big := gocv.NewMat()
	defer big.Close()
	gocv.Resize(img, &big, image.Pt(1440, 1080), 0, 0, gocv.InterpolationLinear)
	for _, m := range []*gocv.Mat{&img, &big} {
		boxes := d.Detect(m, nil)
		if len(boxes) != 1 {
			t.Fatalf("%dx%d: faces %v, want one", m.Cols(), m.Rows(), boxes)
		}
		// The face is around (350, 250) of the 640x480 picture.
		s := float64(m.Cols()) / 640
		cx, cy := float64(boxes[0].X+boxes[0].W/2)/s, float64(boxes[0].Y+boxes[0].H/2)/s
		if cx < 290 || cx > 420 || cy < 180 || cy > 330 || float64(boxes[0].W)/s < 80 {
			t.Errorf("%dx%d: face box %+v (centre %.0f,%.0f in 640x480), want around (350,250)", m.Cols(), m.Rows(), boxes[0], cx, cy)
		}
	}
	// No face in a black frame.
	black := blackFrame(640, 480)
	defer black.Close()
	if boxes := d.Detect(&black, nil); len(boxes) != 0 {
		t.Errorf("faces in a black frame: %v", boxes)
	}
}

func TestFacesBadCascade(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.xml")
	os.WriteFile(junk, []byte("<html>not a cascade</html>"), 0o644)
	for _, p := range []string{filepath.Join(dir, "missing.xml"), dir, junk} {
		if _, err := NewFaces(p); !errors.Is(err, ErrBadOptions) {
			t.Errorf("NewFaces(%s): %v, want ErrBadOptions", p, err)
		}
	}
	if _, err := NewDetector(AnalyzeOptions{Detect: "cats"}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("detector cats: %v", err)
	}
}
