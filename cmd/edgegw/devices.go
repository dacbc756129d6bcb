package main

import (
	"fmt"
	"io"

	"github.com/edgegw/edgegw/devices"
)

func init() {
	register(command{name: "devices", summary: "list the device types this edgegw knows", run: func(args []string, stdout, stderr io.Writer) int {
		if len(args) > 0 {
			fmt.Fprintln(stderr, "usage: edgegw devices")
			return exitUsage
		}
		for _, t := range devices.Types() {
			d, _ := devices.Lookup(t)
			fmt.Fprintf(stdout, "%-10s %s\n", t, d.Summary)
		}
		return exitOK
	}})
}
