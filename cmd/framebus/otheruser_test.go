package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asNobody runs the binary as uid/gid 65534 (a copy of it where that user
// may execute it), to its end within 30 s.
func asNobody(t *testing.T, args ...string) result {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	exe := filepath.Join(t.TempDir(), "framebus")
	copyFile(t, bin, exe)
	for _, d := range []string{filepath.Dir(filepath.Dir(exe)), filepath.Dir(exe)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("framebus %q as nobody did not end within 30 s", args)
	}
	r := result{Stdout: so.String(), Stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	}
	checkNoPanic(t, args, r.Stderr)
	return r
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// framebus ls run by a user who may not open a bus or its lock file (the
// files are 0600, another user's) says it cannot check the producer, not
// that the bus is stale: before, a live bus was listed as "gone (stale)".
func TestListOtherUsersBus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	dir := filepath.Join(t.TempDir(), "buses")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	capt := startCapture(t, dir, "private")
	r := asNobody(t, "ls", "--dir", dir)
	t.Logf("ls as nobody:\n%s%s", r.Stdout, r.Stderr)
	if !strings.Contains(r.Stdout, "private") || !strings.Contains(r.Stdout, "no permission to check") || strings.Contains(r.Stdout, "stale") {
		t.Errorf("ls as nobody of another user's live bus: want \"no permission to check\", not stale:\n%s%s", r.Stdout, r.Stderr)
	}
	if r := asNobody(t, "ls", "--json", "--dir", dir); !strings.Contains(r.Stdout, `"owner_unknown": true`) {
		t.Errorf("ls --json as nobody: want owner_unknown true:\n%s%s", r.Stdout, r.Stderr)
	}
	// The owner sees the producer.
	if r := run(t, "ls", "--dir", dir); strings.Contains(r.Stdout, "no permission") || strings.Contains(r.Stdout, "stale") {
		t.Errorf("ls as the owner:\n%s", r.Stdout)
	}
	capt.Signal(t, syscall.SIGTERM)
	capt.Wait(t, 15*time.Second)
}
