package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgegw/edgegw/internal/duration"
)

// Duration is a TOML string such as "1500ms", "30s" or "2h", parsed by the
// one rule of internal/duration. A value that does not parse is kept and
// reported by validation with its line, so that one bad value does not hide
// the others (which is why it is not that package's type).
type Duration struct {
	time.Duration
	raw string
	err error
}

// UnmarshalText implements encoding.TextUnmarshaler; it never fails.
func (d *Duration) UnmarshalText(b []byte) error {
	d.raw = string(b)
	d.Duration, d.err = duration.Parse(d.raw)
	return nil
}

func (d Duration) problem() string {
	if d.err == nil {
		return ""
	}
	return d.err.Error()
}

// Size is a TOML string such as "256MiB" or "10MB", or a plain number of bytes.
type Size struct {
	Bytes int64
	raw   string
	err   error
}

// UnmarshalText implements encoding.TextUnmarshaler; it never fails.
func (s *Size) UnmarshalText(b []byte) error {
	s.raw = string(b)
	s.Bytes, s.err = parseSize(s.raw)
	return nil
}

func (s Size) problem() string {
	if s.err == nil {
		return ""
	}
	return fmt.Sprintf("%q is not a size (write it like \"512KiB\", \"256MiB\" or \"2GB\")", s.raw)
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"kB", 1000}, {"B", 1},
}

func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * float64(mult)), nil
}

// Addresses is one broker address or a list of them (failover in turn).
type Addresses []string

// UnmarshalTOML accepts a string or a list of strings.
func (a *Addresses) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*a = Addresses{v}
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("address list holds %s, want strings", tomlKind(e))
			}
			*a = append(*a, s)
		}
	default:
		return fmt.Errorf("wants a string or a list of strings, not %s", tomlKind(v))
	}
	return nil
}
