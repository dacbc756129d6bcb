package extbroker

import "time"

// The defaults New applies to zero Options fields. They are the only place
// these values live: the gateway's configuration has no keys for them (the
// local broker is on the same board, so its client needs no tuning).
const (
	DefaultKeepalive      = 10 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultBackoffMin     = 250 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
	DefaultPublishTimeout = 5 * time.Second
	DefaultEchoWindow     = 30 * time.Second
	DefaultEchoMax        = 4096
)
