// Package defaults is the one rule for an option left unset: a count, size
// or duration that is zero or negative takes the package's default. The
// packages that own a behaviour (broker, bridge, broker/extbroker) apply
// their exported Default* constants with it, so "unset" means the same
// everywhere.
//
// Concurrency: no state.
package defaults

// Number is what an option's default can be: a count, a size in bytes or
// a time.Duration (whose underlying type is int64).
type Number interface {
	~int | ~int64
}

// Set gives *v the value d when *v is not above zero.
func Set[T Number](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}
