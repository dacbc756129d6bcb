package gateway

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/edgegw/edgegw/devices"
)

// tsLayout is RFC 3339 in UTC with milliseconds: 2026-11-22T01:02:03.456Z.
const tsLayout = "2006-01-02T15:04:05.000Z07:00"

// encodeReading makes the JSON payload of a reading:
//
//	{"gateway":"gw-01","device":"door","type":"rdm6300","seq":42,
//	 "ts":"2026-11-22T01:02:03.456Z","uid":"0A00C1F2E3",
//	 "values":{"temperature":21.5},"units":{"temperature":"°C"}}
//
// Keys come in this order every time, so payloads diff and compress well.
//
// uncertain adds "ts_uncertain":true after "ts": the system clock was not
// synchronised when the reading was stamped (see clock.go).
func encodeReading(dst []byte, gw, device, typ string, seq uint64, ts time.Time, uncertain bool, r devices.Reading) []byte {
	dst = append(dst, `{"gateway":`...)
	dst = appendString(dst, gw)
	dst = append(dst, `,"device":`...)
	dst = appendString(dst, device)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, typ)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"ts":"`...)
	dst = ts.UTC().AppendFormat(dst, tsLayout)
	dst = append(dst, '"')
	if uncertain {
		dst = append(dst, `,"ts_uncertain":true`...)
	}
	if r.UID != "" {
		dst = append(dst, `,"uid":`...)
		dst = appendJSON(dst, r.UID)
	}
	if len(r.Fields) > 0 {
		dst = append(dst, `,"values":{`...)
		for i, f := range r.Fields {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, f.Name)
			dst = append(dst, ':')
			dst = appendJSON(dst, f.Value)
		}
		dst = append(dst, '}')
		units := false
		for _, f := range r.Fields {
			if f.Unit == "" {
				continue
			}
			if !units {
				dst = append(dst, `,"units":{`...)
				units = true
			} else {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, f.Name)
			dst = append(dst, ':')
			dst = appendJSON(dst, f.Unit)
		}
		if units {
			dst = append(dst, '}')
		}
	}
	return append(dst, '}')
}

// appendJSON appends v as JSON; a value JSON cannot hold (NaN) becomes null.
func appendJSON(dst []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return append(dst, "null"...)
	}
	return append(dst, b...)
}

// appendString appends s as a JSON string (RFC 8259): quote, backslash and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, U+2028 and
// U+2029 escaped so the payload is also safe inside JavaScript. Go's quoting
// (strconv.Quote) is not JSON: it writes \x01 and \a, which JSON parsers
// refuse.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
