package serialport

import "github.com/edgegw/edgegw/internal/duration"

// Duration is a time.Duration written in TOML as a string such as "2s" or
// "250ms". It is internal/duration's type, under the name the drivers'
// configurations have always used.
type Duration = duration.Duration
