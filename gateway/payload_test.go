package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
)

// TestReadingStringsAreJSON: the gateway id, device name and type are
// written as JSON strings, whatever they hold. Go's quoting writes \x01,
// \a and \x7f, which no JSON parser accepts.
func TestReadingStringsAreJSON(t *testing.T) {
	cases := []struct {
		name, in, want string // want: the decoded value ("" = same as in)
	}{
		{name: "plain", in: "door"},
		{name: "quote and backslash", in: `a"b\c`},
		{name: "control character", in: "a\x01b"},
		{name: "bell", in: "a\ab"},
		{name: "delete", in: "a\x7fb"},
		{name: "newline and tab", in: "a\nb\tc\r"},
		{name: "non-ASCII", in: "Küche °C"},
		{name: "line separator", in: "a\u2028b"},
		{name: "invalid UTF-8", in: "a\xffb", want: "a\ufffdb"},
	}
	ts := time.Date(2026, 11, 22, 1, 2, 3, 456e6, time.UTC)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeReading(nil, tc.in, tc.in, tc.in, 42, ts, false, devices.Reading{UID: "0A00C1F2E3"})
			if !json.Valid(b) {
				t.Fatalf("payload is not JSON: %s", b)
			}
			var got struct {
				Gateway, Device, Type string
				Seq                   uint64
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if got.Gateway != want || got.Device != want || got.Type != want || got.Seq != 42 {
				t.Fatalf("decoded %+v, want each string %q: %s", got, want, b)
			}
		})
	}
}
