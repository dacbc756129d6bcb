// Command edgegw is the edge gateway: it reads devices, publishes readings
// into a local MQTT broker and bridges chosen topics to a remote broker over
// mutual TLS. See README.md.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
