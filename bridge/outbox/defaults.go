package outbox

// The defaults Open applies to zero Options fields, exported so that the
// gateway's configuration can be checked against them (its own defaults
// must say the same; a test in package gateway holds them together).
const (
	DefaultSegmentBytes = defaultSegmentBytes
	DefaultSpillAfter   = defaultSpillAfter
	DefaultMemoryBytes  = defaultMemoryBytes
)
