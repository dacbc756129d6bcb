// Package nmea reads NMEA 0183 GPS receivers (type "nmea"): GGA (fix data)
// and RMC (recommended minimum) sentences from any talker (GP, GN, GL, GA,
// BD), each verified against its checksum (NMEA 0183 v4.10 §5.3: XOR of the
// characters between '$' and '*', two upper-case hex digits).
package nmea

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/edgegw/edgegw/devices"
)

// Counter reasons.
const (
	BadChecksum     = "bad_checksum"     // checksum present and wrong
	MissingChecksum = "missing_checksum" // no "*hh" at the end
	BadSentence     = "bad_sentence"     // a GGA/RMC field that does not parse
	BadFrame        = "bad_frame"        // a line that is not a sentence ("$…"), or too long
	Ignored         = "ignored"          // a good sentence of another type (GSV, VTG, …)
)

// Checksum is the XOR of the sentence body (between '$' and '*').
func Checksum(body string) byte {
	var x byte
	for i := 0; i < len(body); i++ {
		x ^= body[i]
	}
	return x
}

// Sentence returns "$" + body + "*hh" (tests use it to play a receiver).
func Sentence(body string) string { return fmt.Sprintf("$%s*%02X", body, Checksum(body)) }

// errReason carries the counter reason of a rejected line.
type errReason struct {
	reason string
	msg    string
}

func (e *errReason) Error() string { return e.reason + ": " + e.msg }

func reject(reason, format string, a ...any) error {
	return &errReason{reason, fmt.Sprintf(format, a...)}
}

// Reason returns the counter reason of an error from Parse.
func Reason(err error) string {
	var e *errReason
	if errors.As(err, &e) {
		return e.reason
	}
	return BadFrame
}

// Parse turns one line into a reading. ok is false (and err nil) for a good
// sentence of a type the driver does not report.
func Parse(line string) (r devices.Reading, ok bool, err error) {
	if len(line) < 7 || line[0] != '$' {
		return r, false, reject(BadFrame, "not a sentence: %.20q", line)
	}
	star := strings.LastIndexByte(line, '*')
	if star < 0 {
		return r, false, reject(MissingChecksum, "%.20q", line)
	}
	body, sum := line[1:star], line[star+1:]
	want, herr := hex.DecodeString(sum)
	if herr != nil || len(want) != 1 {
		return r, false, reject(BadFrame, "checksum field %q", sum)
	}
	if got := Checksum(body); got != want[0] {
		return r, false, reject(BadChecksum, "%02X computed, %s sent", got, sum)
	}
	f := strings.Split(body, ",")
	if len(f[0]) != 5 {
		return r, false, reject(BadFrame, "address field %q", f[0])
	}
	switch f[0][2:] {
	case "GGA":
		r, err = gga(f)
	case "RMC":
		r, err = rmc(f)
	default:
		return r, false, nil
	}
	if err != nil {
		return devices.Reading{}, false, err
	}
	return r, true, nil
}

// gga: $--GGA,hhmmss.ss,llll.ll,a,yyyyy.yy,a,q,ss,h.h,a.a,M,g.g,M,age,stn
func gga(f []string) (devices.Reading, error) {
	if len(f) < 15 {
		return devices.Reading{}, reject(BadSentence, "GGA has %d fields, want 15", len(f))
	}
	r := devices.Reading{Fields: []devices.Field{{Name: "sentence", Value: "GGA"}}}
	if f[1] != "" {
		t, err := clock(f[1])
		if err != nil {
			return r, err
		}
		r.Fields = append(r.Fields, devices.Field{Name: "utc_time", Value: t})
	}
	q, err := strconv.ParseInt(f[6], 10, 64)
	if err != nil || q < 0 || q > 8 {
		return r, reject(BadSentence, "GGA fix quality %q", f[6])
	}
	if q > 0 {
		lat, lon, err := position(f[2], f[3], f[4], f[5])
		if err != nil {
			return r, err
		}
		r.Fields = append(r.Fields, devices.Field{Name: "lat", Value: lat, Unit: "°"}, devices.Field{Name: "lon", Value: lon, Unit: "°"})
	}
	r.Fields = append(r.Fields, devices.Field{Name: "fix_quality", Value: q})
	if f[7] != "" {
		n, err := strconv.ParseInt(f[7], 10, 64)
		if err != nil || n < 0 || n > 99 {
			return r, reject(BadSentence, "GGA satellites %q", f[7])
		}
		r.Fields = append(r.Fields, devices.Field{Name: "satellites", Value: n})
	}
	if f[8] != "" {
		h, err := number(f[8], "GGA HDOP")
		if err != nil {
			return r, err
		}
		r.Fields = append(r.Fields, devices.Field{Name: "hdop", Value: h})
	}
	if q > 0 && f[9] != "" {
		a, err := number(f[9], "GGA altitude")
		if err != nil {
			return r, err
		}
		if f[10] != "M" {
			return r, reject(BadSentence, "GGA altitude unit %q, want M", f[10])
		}
		r.Fields = append(r.Fields, devices.Field{Name: "altitude", Value: a, Unit: "m"})
	}
	return r, nil
}

// rmc: $--RMC,hhmmss.ss,A,llll.ll,a,yyyyy.yy,a,x.x,x.x,ddmmyy,x.x,a[,m[,s]]
func rmc(f []string) (devices.Reading, error) {
	if len(f) < 12 {
		return devices.Reading{}, reject(BadSentence, "RMC has %d fields, want at least 12", len(f))
	}
	r := devices.Reading{Fields: []devices.Field{{Name: "sentence", Value: "RMC"}}}
	if f[1] != "" && f[9] != "" {
		ts, err := stamp(f[9], f[1])
		if err != nil {
			return r, err
		}
		r.Fields = append(r.Fields, devices.Field{Name: "utc", Value: ts})
	}
	var valid bool
	switch f[2] {
	case "A":
		valid = true
	case "V":
	default:
		return r, reject(BadSentence, "RMC status %q, want A or V", f[2])
	}
	r.Fields = append(r.Fields, devices.Field{Name: "valid", Value: valid})
	if !valid {
		return r, nil
	}
	lat, lon, err := position(f[3], f[4], f[5], f[6])
	if err != nil {
		return r, err
	}
	r.Fields = append(r.Fields, devices.Field{Name: "lat", Value: lat, Unit: "°"}, devices.Field{Name: "lon", Value: lon, Unit: "°"})
	if f[7] != "" {
		kn, err := number(f[7], "RMC speed")
		if err != nil {
			return r, err
		}
		r.Fields = append(r.Fields, devices.Field{Name: "speed", Value: round(kn*1.852, 3), Unit: "km/h"})
	}
	if f[8] != "" {
		c, err := number(f[8], "RMC course")
		if err != nil {
			return r, err
		}
		r.Fields = append(r.Fields, devices.Field{Name: "course", Value: c, Unit: "°"})
	}
	return r, nil
}

func number(s, what string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != v {
		return 0, reject(BadSentence, "%s %q", what, s)
	}
	return v, nil
}

// position converts ddmm.mmmm,N and dddmm.mmmm,E to signed decimal degrees.
func position(lat, ns, lon, ew string) (float64, float64, error) {
	la, err := degrees(lat, 2, 90)
	if err != nil {
		return 0, 0, err
	}
	lo, err := degrees(lon, 3, 180)
	if err != nil {
		return 0, 0, err
	}
	switch ns {
	case "N":
	case "S":
		la = -la
	default:
		return 0, 0, reject(BadSentence, "latitude hemisphere %q", ns)
	}
	switch ew {
	case "E":
	case "W":
		lo = -lo
	default:
		return 0, 0, reject(BadSentence, "longitude hemisphere %q", ew)
	}
	return la, lo, nil
}

func degrees(s string, dd int, max float64) (float64, error) {
	if len(s) < dd+2 || strings.IndexByte(s, '.') != -1 && strings.IndexByte(s, '.') != dd+2 {
		return 0, reject(BadSentence, "coordinate %q", s)
	}
	d, err1 := strconv.ParseUint(s[:dd], 10, 16)
	m, err2 := strconv.ParseFloat(s[dd:], 64)
	if err1 != nil || err2 != nil || m < 0 || m >= 60 || float64(d) > max || float64(d) == max && m > 0 {
		return 0, reject(BadSentence, "coordinate %q", s)
	}
	return round(float64(d)+m/60, 7), nil
}

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}

// clock checks hhmmss[.ss] and returns "hh:mm:ss[.ss]".
func clock(s string) (string, error) {
	if len(s) < 6 {
		return "", reject(BadSentence, "time %q", s)
	}
	h, e1 := strconv.Atoi(s[0:2])
	m, e2 := strconv.Atoi(s[2:4])
	sec, e3 := strconv.ParseFloat(s[4:], 64)
	if e1 != nil || e2 != nil || e3 != nil || h > 23 || m > 59 || sec < 0 || sec >= 61 || s[0] == '-' || s[2] == '-' {
		return "", reject(BadSentence, "time %q", s)
	}
	return s[0:2] + ":" + s[2:4] + ":" + s[4:], nil
}

// stamp combines ddmmyy and hhmmss.ss into RFC 3339 UTC; two-digit years
// are 1980–2079 (GPS began in 1980).
func stamp(date, tod string) (string, error) {
	if _, err := clock(tod); err != nil {
		return "", err
	}
	if len(date) != 6 {
		return "", reject(BadSentence, "date %q", date)
	}
	d, err := time.Parse("020106", date)
	if err != nil {
		return "", reject(BadSentence, "date %q", date)
	}
	if d.Year() >= 2080 {
		d = d.AddDate(-100, 0, 0)
	}
	h, _ := strconv.Atoi(tod[0:2])
	m, _ := strconv.Atoi(tod[2:4])
	sec, _ := strconv.ParseFloat(tod[4:], 64)
	t := d.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*1e3)*time.Millisecond)
	return t.UTC().Format("2006-01-02T15:04:05.000Z"), nil
}
