// Command mochiversion prints the version of github.com/mochi-mqtt/server/v2
// recorded in its own build information: what a binary built from this
// module links. TestMochiVersion runs it, because a test binary's build
// information lists no dependencies.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	_ "github.com/mochi-mqtt/server/v2"
)

func main() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(os.Stderr, "mochiversion: no build information")
		os.Exit(1)
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/mochi-mqtt/server/v2" {
			if d.Replace != nil {
				d = d.Replace
			}
			fmt.Println(d.Version)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "mochiversion: github.com/mochi-mqtt/server/v2 is not in the build information")
	os.Exit(1)
}
