// Package test holds the test of the C++ example in examples/cpp (grey_mean.cpp): a
// directory of its own because the go tool refuses C++ sources beside Go files without
// cgo.
package test
