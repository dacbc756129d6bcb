package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/edgegw/edgegw/boards"
)

func init() {
	register(command{
		name:    "boards",
		summary: "list board profiles (pins, serial/I2C/SPI names); --detect names this board",
		run:     runBoards,
	})
}

func runBoards(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("boards", flag.ContinueOnError)
	fs.SetOutput(stderr)
	detect := fs.Bool("detect", false, "print the profile matching this board's device-tree model")
	modelFile := fs.String("model-file", boards.ModelPath, "where to read the device-tree model from")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: edgegw boards [--detect] [NAME]")
		fmt.Fprintln(stderr, "  with no NAME, list the profiles; with NAME, show its pins and buses")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 1 || (*detect && fs.NArg() > 0) {
		fs.Usage()
		return exitUsage
	}
	switch {
	case *detect:
		model, err := boards.ReadModel(*modelFile)
		if err != nil {
			fmt.Fprintf(stderr, "edgegw: %v (not a device-tree board?)\n", err)
			return exitFailure
		}
		b, ok := boards.Detect(model)
		if !ok {
			fmt.Fprintf(stderr, "edgegw boards: no profile for model %q; set gateway.board or name pins by their kernel line names\n", model)
			return exitFailure
		}
		fmt.Fprintf(stdout, "%s\t%s\t(model %q)\n", b.Name, b.Title, model)
		return exitOK
	case fs.NArg() == 1:
		b, ok := boards.ByName(fs.Arg(0))
		if !ok {
			fmt.Fprintf(stderr, "edgegw boards: unknown board %q; known: %s\n", fs.Arg(0), strings.Join(boards.Names(), ", "))
			return exitUsage
		}
		printBoard(stdout, b)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tBOARD\tBINARY\tSERIAL\tI2C\tSPI")
	for _, b := range boards.All() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, b.Title, archList(b.Arch),
			portList(b.Serial), portList(b.I2C), portList(b.SPI))
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\nRun 'edgegw boards NAME' for a board's header pins.")
	return exitOK
}

func printBoard(w io.Writer, b boards.Board) {
	fmt.Fprintf(w, "%s — %s\nSoC:     %s\nbinary:  %s\nmodels:  %s\n", b.Name, b.Title, b.SoC, archList(b.Arch), strings.Join(b.Models, "; "))
	if b.Notes != "" {
		fmt.Fprintf(w, "notes:   %s\n", b.Notes)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, sec := range []struct {
		title string
		ports []boards.Port
	}{{"serial", b.Serial}, {"i2c", b.I2C}, {"spi", b.SPI}} {
		fmt.Fprintf(tw, "\n%s:\n", sec.title)
		for _, p := range sec.ports {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", p.Path, p.Pins, p.Note)
		}
	}
	fmt.Fprintln(tw, "\ngpio chips:")
	for _, c := range b.Chips {
		fmt.Fprintf(tw, "  %s\t%s\t%d lines\t%s\n", c.Name, c.Label, c.Lines, c.Note)
	}
	fmt.Fprintln(tw, "\nheader pins:\n  HEADER\tLINE NAME\tCHIP/LINE\tFUNCTION")
	for _, p := range b.Pins {
		fmt.Fprintf(tw, "  %s\t%s\t%s/%d\t%s\n", p.Header, p.GPIO, p.Chip, p.Line, p.Func)
	}
	tw.Flush()
}

func archList(as []boards.Arch) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func portList(ps []boards.Port) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strings.TrimPrefix(p.Path, "/dev/")
	}
	return strings.Join(s, ",")
}
