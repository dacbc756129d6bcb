// Package lines reads a generic line-oriented serial sensor (type "lines"):
// an Arduino or a module that prints one line per measurement. Each line is
// parsed as a JSON object, as key=value pairs, or with a regular expression's
// named groups; `[device.fields.<name>]` tables give each value its type and
// unit.
package lines

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

// Type is the registered device type.
const Type = "lines"

func init() {
	devices.Register(devices.Driver{
		Type:    Type,
		Summary: "generic line-oriented sensor (UART): JSON, key=value or regex lines with typed fields and units",
		New: func(env devices.Env, decode devices.Decoder) (devices.Device, error) {
			var cfg Config
			if err := decode(&cfg); err != nil {
				return nil, err
			}
			return New(env, cfg)
		},
	})
}

// Formats and field types the config accepts.
var (
	Formats = []string{"json", "kv", "regex"}
	Types   = []string{"float", "int", "bool", "string"}
)

// Config is the `[[device]]` table of a line-oriented sensor.
type Config struct {
	serialport.Config
	// Format is json, kv or regex.
	Format string `toml:"format"`
	// Regex, for format = "regex", has one named group per value, e.g.
	// `T=(?P<temperature>-?\d+\.\d+)`.
	Regex string `toml:"regex"`
	// MaxLine is the longest line accepted (default 1024 bytes).
	MaxLine int `toml:"max_line"`
	// Fields types the values by name. With no fields, every value is
	// reported (numbers as float, true/false as bool, the rest as string);
	// with fields, only those are.
	Fields map[string]FieldSpec `toml:"fields"`
}

// FieldSpec is one `[device.fields.<name>]` table.
type FieldSpec struct {
	Type string `toml:"type"` // float (default), int, bool, string
	Unit string `toml:"unit"`
}

var snake = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// validate fills defaults and checks everything; it returns the compiled
// regex for format = "regex".
func (c *Config) validate() (*regexp.Regexp, error) {
	c.Config = c.Config.WithDefaults(serialport.Defaults8N1(9600))
	if c.MaxLine == 0 {
		c.MaxLine = 1024
	}
	var errs []error
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxLine < 16 || c.MaxLine > 65536 {
		errs = append(errs, fmt.Errorf("max_line: %d is out of range (16 … 65536)", c.MaxLine))
	}
	var re *regexp.Regexp
	switch {
	case c.Format == "":
		errs = append(errs, fmt.Errorf("format: missing (one of %s)", strings.Join(Formats, ", ")))
	case !slices.Contains(Formats, c.Format):
		errs = append(errs, fmt.Errorf("format: %q is not allowed (one of %s)", c.Format, strings.Join(Formats, ", ")))
	case c.Format == "regex" && c.Regex == "":
		errs = append(errs, errors.New(`regex: missing; format = "regex" needs a regular expression with named groups, e.g. 'T=(?P<temperature>[-0-9.]+)'`))
	case c.Format != "regex" && c.Regex != "":
		errs = append(errs, fmt.Errorf("regex: only used with format = \"regex\" (format is %q)", c.Format))
	case c.Format == "regex":
		var err error
		re, err = regexp.Compile(c.Regex)
		if err != nil {
			errs = append(errs, fmt.Errorf("regex: %v", err))
			break
		}
		named := 0
		for _, n := range re.SubexpNames() {
			if n != "" {
				named++
			}
		}
		if named == 0 {
			errs = append(errs, errors.New("regex: has no named group; write (?P<name>…) for each value"))
		}
	}
	names := make([]string, 0, len(c.Fields))
	for n := range c.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := c.Fields[n]
		if !snake.MatchString(n) {
			errs = append(errs, fmt.Errorf("fields.%s: a field name is snake_case (a-z, 0-9, _), starting with a letter", n))
		}
		if f.Type == "" {
			f.Type = "float"
			c.Fields[n] = f
		}
		if !slices.Contains(Types, f.Type) {
			errs = append(errs, fmt.Errorf("fields.%s.type: %q is not allowed (one of %s)", n, f.Type, strings.Join(Types, ", ")))
		}
		if re != nil && re.SubexpIndex(n) < 0 {
			errs = append(errs, fmt.Errorf("fields.%s: the regex has no group (?P<%s>…)", n, n))
		}
	}
	return re, errors.Join(errs...)
}

// New validates cfg (no I/O) and returns the device.
func New(env devices.Env, cfg Config) (*serialport.Stream, error) {
	re, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := new(serialport.Counters)
	p := &Parser{Counts: c, format: cfg.Format, re: re, fields: cfg.Fields}
	p.lines.Max = cfg.MaxLine
	return &serialport.Stream{Port: cfg.Config, Parser: p, Counts: c, Logger: env.Logger, Desc: cfg.Description()}, nil
}

func sortedFields(m map[string]FieldSpec) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
