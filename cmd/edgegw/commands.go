package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Exit codes, named so scripts and systemd can tell them apart.
const (
	exitOK       = 0
	exitFailure  = 1 // the command ran and failed (a check found problems, a connection failed)
	exitUsage    = 2 // bad flags or arguments
	exitConfig   = 3 // the configuration is invalid
	exitInternal = 4 // a bug or an environment problem (cannot write a file, …)
)

// command is one subcommand. Each lives in its own file and registers itself
// in init, so the CLI stays a table and main.go stays a few lines.
type command struct {
	name    string
	summary string
	// run gets the arguments after the subcommand name.
	run func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("edgegw: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "edgegw: unknown command %q; run 'edgegw help' for the list\n", args[0])
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: edgegw <command> [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-14s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'edgegw <command> -h' for a command's flags.\n")
	io.WriteString(w, b.String())
}
