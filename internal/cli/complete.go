package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// compFlag is a flag as completion sees it.
type compFlag struct {
	name, usage string
	value       string   // the value's name (DIR, FILE, ...); "" for a boolean flag
	values      []string // the values to offer
}

// compCmd is a command as completion sees it.
type compCmd struct {
	name, summary string
	flags         []compFlag
	busName       bool     // its first argument is a bus NAME
	words         []string // its arguments, when they are a fixed set
}

// flagsOf lists the flags of fs for completion.
func (a *App) flagsOf(fs *flag.FlagSet) []compFlag {
	var out []compFlag
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			name = ""
		}
		if i := strings.IndexAny(usage, "(;:"); i > 0 {
			usage = usage[:i]
		}
		out = append(out, compFlag{name: f.Name, usage: strings.TrimSpace(usage), value: name, values: a.Values[f.Name]})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// table is the command table for completion.
func (a *App) table() (global []compFlag, cmds []compCmd) {
	g := flag.NewFlagSet("global", flag.ContinueOnError)
	if a.Global != nil {
		a.Global(g)
	}
	if a.Version != nil {
		g.Bool("version", false, "print the version and what the build has")
	}
	g.Bool("help", false, "show help")
	global = a.flagsOf(g)
	for _, c := range a.all() {
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		c.Setup(fs)
		if a.Global != nil {
			a.Global(fs)
		}
		fs.Bool("help", false, "show the command's help")
		cc := compCmd{name: c.Name, summary: c.Summary, flags: a.flagsOf(fs), busName: strings.HasPrefix(c.Args, "NAME")}
		switch c.Name {
		case "completion":
			cc.words = []string{"bash", "zsh"}
		}
		cmds = append(cmds, cc)
	}
	cmds = append(cmds, compCmd{name: "help", summary: "show the help of a command", words: a.names()})
	return global, cmds
}

// WriteCompletion writes the completion script of shell ("bash" or
// "zsh") for the command table.
func (a *App) WriteCompletion(w io.Writer, shell string) error {
	global, cmds := a.table()
	switch shell {
	case "bash":
		return writeBash(w, a.Name, global, cmds)
	case "zsh":
		return writeZsh(w, a.Name, global, cmds)
	}
	return Usagef("shell %q: want bash or zsh", shell)
}

func flagWords(fl []compFlag) string {
	var b []string
	for _, f := range fl {
		b = append(b, "--"+f.name)
	}
	return strings.Join(b, " ")
}

// bashValueCase writes the case arms that complete a flag's value.
func bashValueCase(b *strings.Builder, fl []compFlag) {
	for _, f := range fl {
		switch {
		case f.value == "":
			continue
		case len(f.values) > 0:
			fmt.Fprintf(b, "      --%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return;;\n", f.name, strings.Join(f.values, " "))
		case f.value == "DIR":
			fmt.Fprintf(b, "      --%s) COMPREPLY=($(compgen -d -- \"$cur\")); return;;\n", f.name)
		case f.value == "FILE" || f.value == "PATH":
			fmt.Fprintf(b, "      --%s) COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n", f.name)
		default:
			fmt.Fprintf(b, "      --%s) return;;\n", f.name) // a free value
		}
	}
}

func writeBash(w io.Writer, name string, global []compFlag, cmds []compCmd) error {
	fn := "_" + strings.ReplaceAll(name, "-", "_")
	var b strings.Builder
	fmt.Fprintf(&b, `# bash completion for %[1]s: source <(%[1]s completion bash)
# Made from the command table of this build of %[1]s.

%[2]s_buses() {
  local dir="${FRAMEBUS_DIR:-/dev/shm}" i f n
  for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
    case ${COMP_WORDS[i]} in
      --dir) dir=${COMP_WORDS[i+1]};;
      --dir=*) dir=${COMP_WORDS[i]#--dir=};;
    esac
  done
  for f in "$dir"/framebus.*; do
    [[ -f $f ]] || continue
    n=${f##*/framebus.}
    [[ $n == *.lock || $n == *.tmp-* ]] && continue
    printf '%%s\n' "$n"
  done
}

%[2]s() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= i nargs=0
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
`, name, fn)
	var withValue []string
	for _, f := range global {
		if f.value != "" {
			withValue = append(withValue, "--"+f.name)
		}
	}
	if len(withValue) > 0 {
		fmt.Fprintf(&b, "      %s) ((i++));;\n", strings.Join(withValue, "|"))
	}
	fmt.Fprintf(&b, `      -*) ;;
      *) cmd=${COMP_WORDS[i]}; break;;
    esac
  done
  if [[ -z $cmd ]]; then
    case $prev in
`)
	bashValueCase(&b, global)
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	fmt.Fprintf(&b, `    esac
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W %q -- "$cur"))
    else
      COMPREPLY=($(compgen -W %q -- "$cur"))
    fi
    return
  fi
  # Arguments of the command so far (flags and their values aside).
  for ((i = i + 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --*=*) ;;
      -*) [[ " $(%s_valued "$cmd") " == *" ${COMP_WORDS[i]} "* ]] && ((i++));;
      *) ((nargs++));;
    esac
  done
  case $cmd in
`, flagWords(global), strings.Join(names, " "), fn)
	bashCommands(&b, fn, cmds)
	fmt.Fprintf(&b, "\ncomplete -F %s %s\n", fn, name)
	_, err := io.WriteString(w, b.String())
	return err
}

// bashCommands writes the cases of each command (its flags' values, its
// flags, its first argument) and the function fn_valued that names the
// flags of a command that take a value.
func bashCommands(b *strings.Builder, fn string, cmds []compCmd) {
	for _, c := range cmds {
		fmt.Fprintf(b, "    %s)\n      case $prev in\n", c.name)
		bashValueCase(b, c.flags)
		fmt.Fprintf(b, "      esac\n      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n", flagWords(c.flags))
		switch {
		case len(c.words) > 0:
			fmt.Fprintf(b, "      ((nargs == 0)) && COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(c.words, " "))
		case c.busName:
			fmt.Fprintf(b, "      ((nargs == 0)) && COMPREPLY=($(compgen -W \"$(%s_buses)\" -- \"$cur\"))\n", fn)
		}
		b.WriteString("      ;;\n")
	}
	fmt.Fprintf(b, "  esac\n}\n\n# The flags of a command that take a value.\n%s_valued() {\n  case $1 in\n", fn)
	for _, c := range cmds {
		var v []string
		for _, f := range c.flags {
			if f.value != "" {
				v = append(v, "--"+f.name)
			}
		}
		fmt.Fprintf(b, "    %s) echo %q;;\n", c.name, strings.Join(v, " "))
	}
	b.WriteString("  esac\n}\n")
}

// zshQuote makes s safe inside the single-quoted specs of _arguments and
// _describe.
func zshQuote(s string) string {
	r := strings.NewReplacer(`'`, `'\''`, `[`, `\[`, `]`, `\]`, `:`, `\:`)
	return r.Replace(s)
}

func zshFlagSpecs(b *strings.Builder, fl []compFlag, fn string) {
	for _, f := range fl {
		spec := "'--" + f.name + "[" + zshQuote(f.usage) + "]"
		switch {
		case f.value == "":
		case len(f.values) > 0:
			spec += ":" + f.value + ":(" + zshQuote(strings.Join(f.values, " ")) + ")"
		case f.value == "DIR":
			spec += ":" + f.value + ":_files -/"
		case f.value == "FILE" || f.value == "PATH":
			spec += ":" + f.value + ":_files"
		default:
			spec += ":" + f.value + ": "
		}
		b.WriteString(" \\\n        " + spec + "'")
	}
}

func writeZsh(w io.Writer, name string, global []compFlag, cmds []compCmd) error {
	fn := "_" + strings.ReplaceAll(name, "-", "_")
	var b strings.Builder
	fmt.Fprintf(&b, `#compdef %[1]s
# zsh completion for %[1]s: %[1]s completion zsh > "${fpath[1]}/_%[1]s", or
# source <(%[1]s completion zsh) after compinit.
# Made from the command table of this build of %[1]s.

%[2]s_buses() {
  local dir=${FRAMEBUS_DIR:-/dev/shm} i f n
  local -a buses
  for ((i = 1; i < $#words; i++)); do
    case $words[i] in
      --dir) dir=$words[i+1];;
      --dir=*) dir=${words[i]#--dir=};;
    esac
  done
  for f in $dir/framebus.*(N-.); do
    n=${f:t}
    n=${n#framebus.}
    [[ $n == *.lock || $n == *.tmp-* ]] && continue
    buses+=($n)
  done
  _describe -t buses 'bus' buses
}

%[2]s() {
  local curcontext=$curcontext state line
  local -a commands
  commands=(
`, name, fn)
	for _, c := range cmds {
		fmt.Fprintf(&b, "    '%s:%s'\n", c.name, zshQuote(c.summary))
	}
	b.WriteString("  )\n  _arguments -C")
	zshFlagSpecs(&b, global, fn)
	b.WriteString(" \\\n        '1:command:->command' \\\n        '*::arg:->args'\n")
	b.WriteString("  case $state in\n    command) _describe -t commands 'command' commands;;\n    args)\n      case $words[1] in\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "        %s) _arguments", c.name)
		zshFlagSpecs(&b, c.flags, fn)
		switch {
		case len(c.words) > 0:
			fmt.Fprintf(&b, " \\\n        '1:%s:(%s)'", "argument", zshQuote(strings.Join(c.words, " ")))
		case c.busName:
			fmt.Fprintf(&b, " \\\n        '1:bus:%s_buses'", fn)
		}
		b.WriteString(";;\n")
	}
	fmt.Fprintf(&b, `      esac;;
  esac
}

if [[ $funcstack[1] == %[1]s ]]; then
  %[1]s "$@"   # autoloaded from $fpath
else
  compdef %[1]s %[2]s   # sourced
fi
`, fn, name)
	_, err := io.WriteString(w, b.String())
	return err
}
