package lines

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

// Counter reasons.
const (
	BadJSON  = "bad_json"  // not one JSON object
	BadKV    = "bad_kv"    // a token without '=' or with an empty key
	NoMatch  = "no_match"  // the regex did not match
	BadValue = "bad_value" // a value that does not convert to its field's type
	NoFields = "no_fields" // a line that carries none of the configured fields
	Overlong = "overlong"  // longer than max_line
)

// Parser parses lines. It implements serialport.Parser.
type Parser struct {
	Counts *serialport.Counters
	format string
	re     *regexp.Regexp
	fields map[string]FieldSpec
	lines  serialport.LineSplitter
}

// Reset drops a partial line.
func (p *Parser) Reset() { p.lines.Reset() }

// Feed implements serialport.Parser.
func (p *Parser) Feed(b []byte, emit func(devices.Reading)) {
	p.lines.Feed(b, func(line []byte) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			return
		}
		r, reason := p.Parse(string(line))
		if reason != "" {
			p.Counts.Inc(reason)
			return
		}
		emit(r)
	}, func() { p.Counts.Inc(Overlong) })
}

// raw is one value as the line wrote it: s is the text; typ is the JSON
// kind ("number", "bool", "string") or "" for kv and regex text.
type raw struct {
	key, s, kind string
}

// Parse turns one line into a reading, or returns the counter reason.
func (p *Parser) Parse(line string) (devices.Reading, string) {
	var vals []raw
	var reason string
	switch p.format {
	case "json":
		vals, reason = parseJSON(line)
	case "kv":
		vals, reason = parseKV(line)
	case "regex":
		m := p.re.FindStringSubmatch(line)
		if m == nil {
			return devices.Reading{}, NoMatch
		}
		for i, n := range p.re.SubexpNames() {
			if n != "" && m[i] != "" { // an optional group that did not take part is left out
				vals = append(vals, raw{key: n, s: m[i]})
			}
		}
	}
	if reason != "" {
		return devices.Reading{}, reason
	}
	var r devices.Reading
	for _, v := range vals {
		if len(p.fields) == 0 {
			f, ok := guess(v)
			if ok {
				r.Fields = append(r.Fields, f)
			}
			continue
		}
		spec, ok := p.fields[v.key]
		if !ok {
			continue
		}
		f, ok := convert(v, spec)
		if !ok {
			return devices.Reading{}, BadValue
		}
		r.Fields = append(r.Fields, f)
	}
	if len(r.Fields) == 0 {
		return devices.Reading{}, NoFields
	}
	return r, ""
}

func parseJSON(line string) ([]raw, string) {
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, BadJSON
	}
	var out []raw
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, BadJSON
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, BadJSON
		}
		key := kt.(string)
		switch x := v.(type) {
		case json.Number:
			out = append(out, raw{key, x.String(), "number"})
		case bool:
			out = append(out, raw{key, strconv.FormatBool(x), "bool"})
		case string:
			out = append(out, raw{key, x, "string"})
		default: // null, arrays, objects: not a value of ours
			out = append(out, raw{key, fmt.Sprint(x), "other"})
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, BadJSON
	}
	if strings.TrimSpace(line[dec.InputOffset():]) != "" { // trailing data after the object
		return nil, BadJSON
	}
	return out, ""
}

// parseKV reads `key=value` tokens separated by spaces, tabs, commas or
// semicolons: "t=21.5 h=40 ok=true".
func parseKV(line string) ([]raw, string) {
	toks := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == ';' })
	out := make([]raw, 0, len(toks))
	for _, t := range toks {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, BadKV
		}
		out = append(out, raw{key: k, s: v})
	}
	return out, ""
}

// name makes a payload key from a line's key when no fields are configured.
func name(k string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(k) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func guess(v raw) (devices.Field, bool) {
	n := name(v.key)
	if n == "" || v.kind == "other" {
		return devices.Field{}, false
	}
	switch v.kind {
	case "string":
		return devices.Field{Name: n, Value: v.s}, true
	case "bool":
		return devices.Field{Name: n, Value: v.s == "true"}, true
	}
	if f, ok := finite(v.s); ok {
		return devices.Field{Name: n, Value: f}, true
	}
	if v.s == "true" || v.s == "false" {
		return devices.Field{Name: n, Value: v.s == "true"}, true
	}
	return devices.Field{Name: n, Value: v.s}, true
}

func convert(v raw, spec FieldSpec) (devices.Field, bool) {
	f := devices.Field{Name: v.key, Unit: spec.Unit}
	if v.kind == "other" {
		return f, false
	}
	switch spec.Type {
	case "string":
		f.Value = v.s
	case "int":
		n, err := strconv.ParseInt(v.s, 10, 64)
		if err != nil || v.kind == "bool" {
			return f, false
		}
		f.Value = n
	case "bool":
		b, ok := parseBool(v.s)
		if !ok {
			return f, false
		}
		f.Value = b
	default: // float
		x, ok := finite(v.s)
		if !ok || v.kind == "bool" {
			return f, false
		}
		f.Value = x
	}
	return f, true
}

// finite parses a decimal number; NaN, infinities, hex floats and
// underscores (which strconv accepts) are not sensor values.
func finite(s string) (float64, bool) {
	if strings.ContainsAny(s, "xXpP_") {
		return 0, false
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "1", "on", "yes":
		return true, true
	case "false", "0", "off", "no":
		return false, true
	}
	return false, false
}
