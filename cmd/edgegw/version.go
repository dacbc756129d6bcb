package main

import (
	"fmt"
	"io"
	"runtime"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func init() {
	register(command{
		name:    "version",
		summary: "print the version, Go version and target",
		run: func(args []string, stdout, stderr io.Writer) int {
			fmt.Fprintf(stdout, "edgegw %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return exitOK
		},
	})
}
