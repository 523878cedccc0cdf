// Command buildtag puts a //go:build line at the top of a generated Go file
// that its generator wrote without one (go generate in framebus/: the
// Windows system calls, kept in a *_unsafe.go file whose name implies no
// operating system).
//
//	go run ./internal/buildtag -tag windows FILE
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
)

func main() {
	tag := flag.String("tag", "", "the build constraint, e.g. windows")
	flag.Parse()
	if *tag == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: buildtag -tag EXPR FILE")
		os.Exit(2)
	}
	path := flag.Arg(0)
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	line := []byte("//go:build " + *tag + "\n\n")
	if bytes.HasPrefix(src, line) {
		return
	}
	if err := os.WriteFile(path, append(line, src...), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
