package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/framebus/framebus/internal/testutil"
)

// live is a framebus process whose output the test reads while it runs.
type live = proc

// startLive runs the binary in the background with env added to the
// environment; Cleanup kills it by pid.
func startLive(t *testing.T, env []string, args ...string) *live {
	t.Helper()
	return startEnv(t, env, args...)
}

// startViewHTTP starts 'framebus view NAME --http 127.0.0.1:0' and returns
// it and the URL it prints.
func startViewHTTP(t *testing.T, dir, name string, extra ...string) (*live, string) {
	t.Helper()
	args := append([]string{"view", name, "--http", "127.0.0.1:0", "--dir", dir}, extra...)
	v := startLive(t, nil, args...)
	var url string
	testutil.WaitFor(t, 15*time.Second, "the web preview's URL", func() bool {
		if !v.Running() {
			t.Fatalf("view ended (exit %d):\n%s", v.Code, v.Stderr.String())
		}
		line, _, ok := strings.Cut(v.Stdout.String(), "\n")
		if ok {
			url = line[strings.LastIndex(line, " ")+1:]
		}
		return ok
	})
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/") {
		t.Fatalf("view printed %q", v.Stdout.String())
	}
	return v, url
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	r, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return r, b
}

type viewerStatus struct {
	State, Waiting string
	Generation     uint64
	Seq            uint64
	Width, Height  int
	Format         string
	Pictures       uint64
	FramesRead     uint64 `json:"frames_read"`
	Connections    int
	Refused        uint64
}

func viewerJSON(t *testing.T, url string) viewerStatus {
	t.Helper()
	_, b := get(t, url+"viewer.json")
	var v viewerStatus
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("viewer.json: %v\n%s", err, b)
	}
	return v
}

// barColors are the pattern's bars, left to right.
var barColors = [8][3]int{
	{255, 255, 255}, {255, 255, 0}, {0, 255, 255}, {0, 255, 0},
	{255, 0, 255}, {255, 0, 0}, {0, 0, 255}, {0, 0, 0},
}

// checkPattern checks that img is the test pattern: each colour bar, at
// one of a few rows (the moving box may cover one), has its colour within
// tol.
func checkPattern(t *testing.T, img image.Image, tol int) {
	t.Helper()
	b := img.Bounds()
	barsH := b.Dy() * 2 / 3
	for i, want := range barColors {
		x := b.Min.X + (2*i+1)*b.Dx()/16
		found := false
		var seen [][3]int
		for _, y := range []int{barsH / 10, barsH / 2, barsH * 9 / 10} {
			r, g, bl, _ := img.At(x, b.Min.Y+y).RGBA()
			got := [3]int{int(r >> 8), int(g >> 8), int(bl >> 8)}
			seen = append(seen, got)
			ok := true
			for k := range 3 {
				if d := got[k] - want[k]; d > tol || d < -tol {
					ok = false
				}
			}
			found = found || ok
		}
		if !found {
			t.Errorf("bar %d: colours %v at x=%d, want %v (±%d)", i, seen, x, want, tol)
		}
	}
}

func TestViewHTTP(t *testing.T) {
	needOpenCV(t)
	dir := t.TempDir()
	v, url := startViewHTTP(t, dir, "web", "--timeout", "30s")

	// Before the producer: the page works and says it waits.
	if r, b := get(t, url); r.StatusCode != 200 || !bytes.Contains(b, []byte(`<img id="live"`)) || !bytes.Contains(b, []byte(`"stream.mjpg"`)) {
		t.Fatalf("GET / = %d:\n%s", r.StatusCode, b)
	}
	testutil.WaitFor(t, 10*time.Second, "viewer.json to say waiting", func() bool {
		s := viewerJSON(t, url)
		return s.State == "waiting" && s.Waiting == "not started"
	})
	if r, _ := get(t, url+"frame.jpg"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("frame.jpg without a producer: %d, want 503", r.StatusCode)
	}

	capt := startLive(t, nil, "capture", "--name", "web", "--source", "pattern", "--size", "320x240", "--fps", "50", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the viewer to stream", func() bool { return viewerJSON(t, url).State == "streaming" })

	// /frame.jpg: the pattern at the bus's size.
	r, b := get(t, url+"frame.jpg")
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("frame.jpg: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if sz := img.Bounds().Size(); sz != image.Pt(320, 240) {
		t.Fatalf("frame.jpg is %v, want 320x240", sz)
	}
	checkPattern(t, img, 40)

	// /stats: the JSON of 'framebus stat --json', same keys, and the
	// preview's WebRTC side.
	_, b = get(t, url+"stats")
	var web map[string]any
	if err := json.Unmarshal(b, &web); err != nil {
		t.Fatalf("stats: %v\n%s", err, b)
	}
	if _, ok := web["webrtc"].(map[string]any); !ok {
		t.Errorf("/stats has no webrtc object: %v", web["webrtc"])
	}
	delete(web, "webrtc")
	st := run(t, "stat", "web", "--json", "--dir", dir)
	var cli map[string]any
	if err := json.Unmarshal([]byte(st.Stdout), &cli); err != nil {
		t.Fatalf("stat --json: %v\n%s", err, st.Stdout)
	}
	if k1, k2 := keys(web), keys(cli); k1 != k2 {
		t.Errorf("/stats keys:\n%s\nstat --json keys:\n%s", k1, k2)
	}
	if web["name"] != "web" || web["last_seq"].(float64) < 1 || len(web["consumers"].([]any)) != 1 {
		t.Errorf("/stats: name %v, last_seq %v, consumers %v", web["name"], web["last_seq"], web["consumers"])
	}

	// /stream.mjpg: JPEG parts of the right size, newer and newer.
	checkStream(t, url, 5, 320, 240)

	// The producer goes: the viewer waits (and stays up), then follows a
	// new one with another size and format.
	if code := capt.Stop(t); code != 0 {
		t.Fatalf("capture exit %d", code)
	}
	testutil.WaitFor(t, 10*time.Second, "viewer.json to say waiting", func() bool { return viewerJSON(t, url).State == "waiting" })
	if !v.Running() {
		t.Fatalf("view ended when the producer left:\n%s", v.Stderr.String())
	}
	startLive(t, nil, "capture", "--name", "web", "--source", "pattern", "--size", "160x120", "--format", "NV12", "--fps", "50", "--dir", dir)
	testutil.WaitFor(t, 15*time.Second, "the viewer to stream the new producer", func() bool {
		s := viewerJSON(t, url)
		return s.State == "streaming" && s.Width == 160
	})
	_, b = get(t, url+"frame.jpg")
	if img, err = jpeg.Decode(bytes.NewReader(b)); err != nil || img.Bounds().Size() != image.Pt(160, 120) {
		t.Fatalf("frame.jpg after the new producer: %v, %v; want 160x120", err, img.Bounds())
	}
	checkPattern(t, img, 40)
	if code := v.Stop(t); code != 0 {
		t.Fatalf("view exit %d:\n%s", code, v.Stderr.String())
	}
}

func keys(m map[string]any) string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return strings.Join(k, " ")
}

// checkStream reads n parts of /stream.mjpg.
func checkStream(t *testing.T, url string, n, w, h int) {
	t.Helper()
	r, err := httpClient.Get(url + "stream.mjpg")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/x-mixed-replace" {
		t.Fatalf("stream Content-Type %q", r.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var prev uint64
	for i := range n {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		seq, err := strconv.ParseUint(part.Header.Get("X-Frame-Seq"), 10, 64)
		if err != nil || seq <= prev {
			t.Fatalf("part %d: X-Frame-Seq %q after %d", i, part.Header.Get("X-Frame-Seq"), prev)
		}
		prev = seq
		img, err := jpeg.Decode(part)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if img.Bounds().Size() != image.Pt(w, h) {
			t.Fatalf("part %d is %v, want %dx%d", i, img.Bounds().Size(), w, h)
		}
	}
}

// A viewer with no producer gives up after --timeout.
func TestViewNoProducer(t *testing.T) {
	needOpenCV(t)
	r := run(t, "view", "nobody", "--http", "127.0.0.1:0", "--timeout", "500ms", "--dir", t.TempDir())
	if r.Code != 1 || !strings.Contains(r.Stderr, `no bus "nobody"`) || !strings.Contains(r.Stderr, "after waiting 500ms") {
		t.Fatalf("exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
}

// Without OpenCV the consumers that need it exist and say what the build
// lacks (exit 2, as for capture --source file:): checked on a CGO_ENABLED=0
// build of the command.
func TestConsumersWithoutOpenCV(t *testing.T) {
	nocv := bin
	if hasOpenCV {
		if testing.Short() {
			t.Skip("builds a second binary; -short skips it")
		}
		nocv = filepath.Join(t.TempDir(), "framebus-nocv")
		cmd := exec.Command("go", "build", "-o", nocv, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
		}
	}
	for _, args := range [][]string{
		{"view", "cam0"},
		{"view", "cam0", "--http", ":0"},
		{"analyze", "cam0", "--detect", "motion"},
		{"record", "cam0", "--out", "cam0.avi"},
	} {
		cmd := exec.Command(nocv, args...)
		var se bytes.Buffer
		cmd.Stderr = &se
		err := cmd.Run()
		ee, _ := err.(*exec.ExitError)
		if ee == nil || ee.ExitCode() != 2 || !strings.Contains(se.String(), "this build lacks OpenCV") {
			t.Errorf("%q: %v, stderr:\n%s", args, err, se.String())
		}
	}
	// And the WebRTC source says it lacks the codec.
	cmd := exec.Command(nocv, "capture", "--name", "far", "--source", "whep:http://127.0.0.1:1/whep")
	var se bytes.Buffer
	cmd.Stderr = &se
	err := cmd.Run()
	if ee, _ := err.(*exec.ExitError); ee == nil || ee.ExitCode() != 2 || !strings.Contains(se.String(), "needs a build with the WebRTC codec (libvpx)") {
		t.Errorf("capture --source whep: %v, stderr:\n%s", err, se.String())
	}
}

var _ = bufio.NewReader
var _ = fmt.Sprint
