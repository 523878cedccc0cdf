// Package testutil is what the tests of several packages share: WaitFor (a
// bounded wait for a condition, instead of a sleep that guesses), Proc (a
// child process with bounded waits, killed by pid at the end of the test,
// its output shown when the test failed), ShmDir (the bus directory of a
// test) and Logs (a *slog.Logger whose messages a test reads).
//
// It imports nothing of framebus, so that the framebus package's own tests
// can use it; their child processes (framebus/internal/fbproc) keep a
// harness of their own, which reads the protocol's internals.
package testutil
