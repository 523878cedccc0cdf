// Package cli is what the framebus commands share: git-style subcommands
// whose flags may come before or after their arguments, one exit code per
// kind of failure, one-line error messages, and the zerolog logger on stderr
// with its two flags.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// Exit codes.
const (
	ExitOK    = 0 // success
	ExitError = 1 // the command ran and failed
	ExitUsage = 2 // the command line was wrong; nothing was done
)

// UsageError is an error in what the user asked for: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Usage marks err as a usage error (nil stays nil).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// ExitCode is the exit code for the error a command returned.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	}
	return ExitError
}

// Parse parses args into fs with flags anywhere: before, between and after
// the positional arguments, which it returns in order. "--" ends the flags.
// It returns flag.ErrHelp for -h and --help, a *UsageError for a bad flag.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, flag.ErrHelp
			}
			return nil, &UsageError{Err: gnuStyle(err)}
		}
		rest := fs.Args()
		used := len(args) - len(rest)
		if used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// gnuStyle rewrites the flag package's "-name" as "--name", the spelling
// the help uses.
func gnuStyle(err error) error {
	msg := err.Error()
	for _, p := range []string{"defined: -", "argument: -", "flag -", "for -"} {
		msg = strings.Replace(msg, p, p+"-", 1)
	}
	return errors.New(msg)
}

// Command is one subcommand.
type Command struct {
	Name        string
	Args        string // synopsis after the name, e.g. "NAME [--json] [--dir DIR]"
	Summary     string // one line for the list of commands
	Description string // paragraphs for --help
	Examples    string // one example a line, for --help

	// Setup registers the command's flags on fs and returns the function
	// that runs it with the positional arguments.
	Setup func(fs *flag.FlagSet) func(ctx context.Context, args []string) error
}

// App is a command with subcommands.
type App struct {
	Name     string
	Summary  string
	Commands []*Command

	// Global registers the flags that every subcommand takes (and that may
	// also come before the subcommand's name). It may be called more than
	// once on different flag sets; it must register the current values as
	// the defaults, so that a flag given before the name survives.
	Global func(fs *flag.FlagSet)
	// Before runs after the flags are parsed, before the command: it sets
	// up logging, and the context it returns (with the logger: see
	// zerolog.Ctx) is the command's. An error is a usage error.
	Before func(ctx context.Context) (context.Context, error)
	// Report prints a command's error, ctx being the command's context;
	// nil prints "NAME CMD: error" to Stderr.
	Report func(ctx context.Context, cmd string, err error)

	// Version, when set, writes what the build is (as JSON with json):
	// "NAME --version" and the built-in "NAME version [--json]".
	Version func(w io.Writer, json bool) error

	// Values are the values shell completion offers for a flag's value, by
	// flag name (e.g. "format": RGBA, NV12, ...). Flags whose value name is
	// DIR complete directories, FILE or PATH files; a first argument NAME
	// completes the buses of the bus directory. See WriteCompletion.
	Values map[string][]string

	Stdout, Stderr io.Writer
}

// Run runs the subcommand that args (without the program name) ask for and
// returns the exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Stdout == nil {
		a.Stdout = os.Stdout
	}
	if a.Stderr == nil {
		a.Stderr = os.Stderr
	}
	top := flag.NewFlagSet(a.Name, flag.ContinueOnError)
	top.SetOutput(io.Discard)
	top.Usage = func() {}
	if a.Global != nil {
		a.Global(top)
	}
	var version *bool
	if a.Version != nil {
		version = top.Bool("version", false, "print the version and what the build has")
	}
	// Global flags before the subcommand: stop at the first non-flag.
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.help(a.Stdout)
			return ExitOK
		}
		fmt.Fprintf(a.Stderr, "%s: %v (see %s --help)\n", a.Name, gnuStyle(err), a.Name)
		return ExitUsage
	}
	if version != nil && *version {
		if err := a.Version(a.Stdout, false); err != nil {
			fmt.Fprintf(a.Stderr, "%s: %v\n", a.Name, err)
			return ExitError
		}
		return ExitOK
	}
	args = top.Args()
	if len(args) == 0 {
		a.help(a.Stderr)
		return ExitUsage
	}
	name, args := args[0], args[1:]
	if name == "help" {
		if len(args) == 0 {
			a.help(a.Stdout)
			return ExitOK
		}
		name, args = args[0], []string{"--help"}
	}
	cmd := a.find(name)
	if cmd == nil {
		fmt.Fprintf(a.Stderr, "%s: unknown command %q (commands: %s; see %s --help)\n", a.Name, name, strings.Join(a.names(), ", "), a.Name)
		return ExitUsage
	}
	return a.runCommand(ctx, cmd, args)
}

// runCommand parses the command's flags, runs Before and the command, and
// reports its error; the exit code.
func (a *App) runCommand(ctx context.Context, cmd *Command, args []string) int {
	fs := flag.NewFlagSet(a.Name+" "+cmd.Name, flag.ContinueOnError)
	run := cmd.Setup(fs)
	if a.Global != nil {
		a.Global(fs)
	}
	pos, err := Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.commandHelp(a.Stdout, cmd, fs)
		return ExitOK
	}
	if err == nil && a.Before != nil {
		var bctx context.Context
		if bctx, err = a.Before(ctx); bctx != nil {
			ctx = bctx
		}
		err = Usage(err)
	}
	if err == nil {
		err = run(ctx, pos)
	}
	if err != nil {
		if ExitCode(err) == ExitUsage {
			err = &UsageError{Err: fmt.Errorf("%v (see %s %s --help)", err, a.Name, cmd.Name)}
		}
		if a.Report != nil {
			a.Report(ctx, cmd.Name, err)
		} else {
			fmt.Fprintf(a.Stderr, "%s %s: %v\n", a.Name, cmd.Name, err)
		}
	}
	return ExitCode(err)
}

func (a *App) find(name string) *Command {
	for _, c := range a.all() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (a *App) names() []string {
	var n []string
	for _, c := range a.all() {
		n = append(n, c.Name)
	}
	return n
}

// all is the commands and the built-in ones: version (with Version) and
// completion.
func (a *App) all() []*Command {
	cmds := append(a.Commands[:len(a.Commands):len(a.Commands)], a.builtins()...)
	return cmds
}

func (a *App) builtins() []*Command {
	var b []*Command
	if a.Version != nil {
		b = append(b, &Command{
			Name:    "version",
			Args:    "[--json]",
			Summary: "print the version, the commit, the Go version and what the build has",
			Description: `Prints the module version, the VCS commit it was built from (and whether
the tree had changes), the Go version and platform, the build tags, and
what the build has and lacks (the same as --version). --json prints one
object.`,
			Examples: a.Name + " version\n" + a.Name + " version --json | jq .commit\n" + a.Name + " --version",
			Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
				js := fs.Bool("json", false, "print JSON")
				return func(_ context.Context, args []string) error {
					if len(args) > 0 {
						return Usagef("unexpected argument %q", args[0])
					}
					return a.Version(a.Stdout, *js)
				}
			},
		})
	}
	b = append(b, &Command{
		Name:    "completion",
		Args:    "bash|zsh",
		Summary: "print a shell completion script (bash or zsh)",
		Description: `Prints the completion script of the shell named: commands, their flags,
the values of flags that have a few (sources, formats, log levels),
directories for DIR and files for FILE, and the buses of the bus directory
(--dir, else $FRAMEBUS_DIR, else /dev/shm) where a command takes a bus NAME.
It is made from the command table, so it always matches the binary.`,
		Examples: `source <(` + a.Name + ` completion bash)          # bash, this shell
			` + a.Name + ` completion bash > /etc/bash_completion.d/` + a.Name + `
			` + a.Name + ` completion zsh > "${fpath[1]}/_` + a.Name + `"   # zsh (then compinit)`,
		Setup: func(fs *flag.FlagSet) func(context.Context, []string) error {
			return func(_ context.Context, args []string) error {
				if len(args) != 1 {
					return Usagef("name one shell: bash or zsh")
				}
				return a.WriteCompletion(a.Stdout, args[0])
			}
		},
	})
	return b
}

func (a *App) help(w io.Writer) {
	fmt.Fprintf(w, "%s - %s\n\nUsage:\n  %s [global flags] COMMAND [ARGS] [FLAGS]\n\nCommands:\n", a.Name, a.Summary, a.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range a.all() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Name, c.Summary)
	}
	tw.Flush()
	if a.Global != nil {
		fs := flag.NewFlagSet("global", flag.ContinueOnError)
		a.Global(fs)
		if a.Version != nil {
			fs.Bool("version", false, "print the version and what the build has (before the command)")
		}
		fmt.Fprintf(w, "\nGlobal flags (before or after the command):\n")
		printFlags(w, fs)
	}
	fmt.Fprintf(w, "\nFlags may come before or after a command's arguments.\nRun '%s COMMAND --help' for a command's flags and examples.\n", a.Name)
	fmt.Fprintf(w, "Exit codes: %d success, %d runtime error, %d usage error.\n", ExitOK, ExitError, ExitUsage)
}

func (a *App) commandHelp(w io.Writer, c *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s %s %s\n\n%s\n", a.Name, c.Name, c.Args, c.Summary)
	if c.Description != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Description))
	}
	fmt.Fprintf(w, "\nFlags:\n")
	printFlags(w, fs)
	if c.Examples != "" {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, l := range strings.Split(strings.TrimSpace(c.Examples), "\n") {
			fmt.Fprintf(w, "  %s\n", strings.TrimSpace(l))
		}
	}
}

// printFlags lists the flags GNU-style (--name VALUE), sorted.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	var fl []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { fl = append(fl, f) })
	sort.Slice(fl, func(i, j int) bool { return fl[i].Name < fl[j].Name })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range fl {
		name, usage := flag.UnquoteUsage(f)
		spec := "--" + f.Name
		if name != "" {
			spec += " " + name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", spec, usage, def)
	}
	tw.Flush()
}
