//go:build unix

// Package xvfb starts a private X server for the tests that need a display
// (the screen source, the preview window). It is test support: it takes a
// testing.TB and kills the server by its pid at the test's end.
package xvfb

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Start runs Xvfb with one screen of w x h x 24 on a display it picks
// itself (-displayfd), with extra arguments appended (e.g. "-retro" for a
// patterned root window), and returns ":N". The server is killed by pid at
// Cleanup. Without Xvfb the test is skipped, unless FRAMEBUS_REQUIRE_XVFB=1.
// The server resets when its last client leaves, as xvfb-run's does.
func Start(t testing.TB, w, h int, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("Xvfb")
	if err != nil {
		if os.Getenv("FRAMEBUS_REQUIRE_XVFB") == "1" {
			t.Fatal("Xvfb is missing and FRAMEBUS_REQUIRE_XVFB=1 (apt-get install xvfb)")
		}
		t.Skip("needs Xvfb (apt-get install xvfb)")
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	args := append([]string{"-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", w, h), "-nolisten", "tcp"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{wr}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(rd).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case n := <-line:
		if n == "" {
			t.Fatalf("Xvfb gave no display number:\n%s", stderr.String())
		}
		return ":" + n
	case <-time.After(10 * time.Second):
		t.Fatalf("Xvfb did not start within 10 s:\n%s", stderr.String())
	}
	return ""
}
