package lines

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
	"github.com/edgegw/edgegw/devices/serialtest"
)

func render(r devices.Reading) string {
	var s []string
	for _, f := range r.Fields {
		s = append(s, fmt.Sprintf("%s=%v(%T)%s", f.Name, f.Value, f.Value, f.Unit))
	}
	return strings.Join(s, " ")
}

func newParser(t *testing.T, snippet string) *Parser {
	t.Helper()
	d, err := New(devices.Env{}, decodeCfg(t, "port = \"/dev/ttyUSB0\"\n"+snippet))
	if err != nil {
		t.Fatal(err)
	}
	return d.Parser.(*Parser)
}

func decodeCfg(t *testing.T, snippet string) Config {
	t.Helper()
	var c Config
	if err := serialtest.Decoder(snippet)(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

const typed = `
[fields.temperature]
unit = "°C"
[fields.humidity]
unit = "%"
[fields.count]
type = "int"
[fields.door_open]
type = "bool"
[fields.state]
type = "string"
`

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, line, want, reason string
	}{
		{"json typed", `format = "json"` + typed, `{"temperature":21.5,"humidity":40,"count":7,"door_open":false,"state":"idle","extra":1}`,
			"temperature=21.5(float64)°C humidity=40(float64)% count=7(int64) door_open=false(bool) state=idle(string)", ""},
		{"json untyped", `format = "json"`, `{"T": 21.5, "ok": true, "fw": "1.2", "arr": [1]}`, "t=21.5(float64) ok=true(bool) fw=1.2(string)", ""},
		{"json int that is a float", `format = "json"` + typed, `{"count":7.5}`, "", BadValue},
		{"json not an object", `format = "json"`, `[1,2]`, "", BadJSON},
		{"json cut", `format = "json"`, `{"t":21.`, "", BadJSON},
		{"json trailing", `format = "json"`, `{"t":1} x`, "", BadJSON},
		{"json none of the fields", `format = "json"` + typed, `{"other":1}`, "", NoFields},
		{"json nested typed", `format = "json"` + typed, `{"temperature":{"v":1}}`, "", BadValue},
		{"kv typed", `format = "kv"` + typed, `temperature=21.50, humidity=40.2; count=12 door_open=1`,
			"temperature=21.5(float64)°C humidity=40.2(float64)% count=12(int64) door_open=true(bool)", ""},
		{"kv untyped", `format = "kv"`, `T=21.5 RH%=40 mode=auto on=true`, "t=21.5(float64) rh_=40(float64) mode=auto(string) on=true(bool)", ""},
		{"kv bad token", `format = "kv"`, `t=21.5 garbage`, "", BadKV},
		{"kv NaN", `format = "kv"` + typed, `temperature=NaN`, "", BadValue},
		{"kv Inf", `format = "kv"` + typed, `temperature=+Inf`, "", BadValue},
		{"kv hex float", `format = "kv"` + typed, `temperature=0x1p3`, "", BadValue},
		{"regex", `format = "regex"` + "\nregex = 'T:(?P<temperature>-?[0-9.]+)C H:(?P<humidity>[0-9.]+)%'\n[fields.temperature]\nunit = \"°C\"\n[fields.humidity]\nunit = \"%\"",
			"T:-3.5C H:81%", "temperature=-3.5(float64)°C humidity=81(float64)%", ""},
		{"regex no match", `format = "regex"` + "\nregex = 'T:(?P<t>[0-9.]+)'", "hello", "", NoMatch},
		{"regex bad number", `format = "regex"` + "\nregex = 'T:(?P<t>\\S+)'\n[fields.t]\ntype = \"float\"", "T:12..5", "", BadValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, reason := newParser(t, tc.cfg).Parse(tc.line)
			if reason != tc.reason || render(r) != tc.want {
				t.Errorf("got %q reason %q, want %q reason %q", render(r), reason, tc.want, tc.reason)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{``, "format: missing (one of json, kv, regex)"},
		{`format = "xml"`, `format: "xml" is not allowed (one of json, kv, regex)`},
		{`format = "regex"`, "regex: missing"},
		{`format = "json"` + "\nregex = 'x'", `regex: only used with format = "regex"`},
		{`format = "regex"` + "\nregex = '(unclosed'", "regex: error parsing regexp"},
		{`format = "regex"` + "\nregex = 'T=([0-9]+)'", "regex: has no named group"},
		{`format = "regex"` + "\nregex = 'T=(?P<t>[0-9]+)'\n[fields.h]\ntype = \"float\"", "fields.h: the regex has no group (?P<h>…)"},
		{`format = "json"` + "\n[fields.t]\ntype = \"double\"", `fields.t.type: "double" is not allowed (one of float, int, bool, string)`},
		{`format = "json"` + "\n[fields.Temp]\ntype = \"float\"", "fields.Temp: a field name is snake_case"},
		{`format = "json"` + "\nmax_line = 1", "max_line: 1 is out of range"},
		{`format = "json"` + "\nbaud = 12345", "baud: 12345 is not a standard rate"},
	} {
		_, err := New(devices.Env{}, decodeCfg(t, "port = \"/dev/ttyUSB0\"\n"+tc.cfg))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// buildStream: an Arduino printing JSON at 115200, with a boot banner, a
// line cut by a reset, a value of the wrong type, an overlong line.
func buildStream() ([]byte, serialtest.Golden) {
	var b strings.Builder
	var want []devices.Reading
	counts := devices.Stats{}
	b.WriteString("\x00\xf0Booting sensor v1.2...\r\n") // banner: not JSON
	counts[BadJSON]++
	for i := range 40 {
		temp := 20 + float64(i%7)*0.25
		hum := 40 + float64(i%5)
		fmt.Fprintf(&b, `{"temperature":%g,"humidity":%g,"count":%d,"door_open":%t,"state":"s%d","uptime_ms":%d}`+"\r\n", temp, hum, i, i%3 == 0, i%2, i*1000)
		want = append(want, devices.Reading{Fields: []devices.Field{
			{Name: "temperature", Value: temp, Unit: "°C"},
			{Name: "humidity", Value: hum, Unit: "%"},
			{Name: "count", Value: int64(i)},
			{Name: "door_open", Value: i%3 == 0},
			{Name: "state", Value: fmt.Sprintf("s%d", i%2)},
		}})
		switch i {
		case 10:
			b.WriteString(`{"temperature":21.5,"humi` + "\r\n") // reset mid-line
			counts[BadJSON]++
		case 20:
			b.WriteString(`{"temperature":"n/a","humidity":40}` + "\r\n")
			counts[BadValue]++
		case 30:
			b.WriteString(`{"x":"` + strings.Repeat("y", 2000) + `"}` + "\r\n")
			counts[Overlong]++
		}
	}
	return []byte(b.String()), serialtest.MakeGolden(want, counts)
}

func TestGoldenStreamOnPTY(t *testing.T) {
	stream, want := buildStream()
	serialtest.CheckGolden(t, "testdata/stream.bin", stream)
	serialtest.CheckGolden(t, "testdata/expected.json", want.JSON())
	conf, err := os.ReadFile("testdata/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Device []toml.Primitive }
	md, err := toml.Decode(string(conf), &doc)
	if err != nil {
		t.Fatal(err)
	}
	path, dev := serialtest.NewPTY(t)
	var cfg struct {
		Config
		Name, Type string
	}
	if err := md.PrimitiveDecode(doc.Device[0], &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Port = path
	d, err := New(devices.Env{Name: "bench"}, cfg.Config)
	if err != nil {
		t.Fatal(err)
	}
	run := serialtest.Start(t, d)
	go serialtest.WriteSplit(dev, stream, rand.New(rand.NewPCG(9, 9)))
	got := run.Take(t, len(want.Readings), 10*time.Second)
	if g := serialtest.MakeGolden(got, d.Counters()).JSON(); !bytes.Equal(g, want.JSON()) {
		t.Fatalf("got\n%s\nwant\n%s", g, want.JSON())
	}
	if err := run.Stop(t); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse: every format, any line: never panics; a typed reading only
// carries values of the configured types, finite floats.
func FuzzParse(f *testing.F) {
	f.Add(`{"temperature":21.5,"humidity":40,"count":7,"door_open":false,"state":"idle"}`)
	f.Add(`temperature=21.50, humidity=40.2; count=12 door_open=1`)
	f.Add(`T:-3.5C H:81%`)
	f.Add(`{"t":1e400}`)
	parsers := map[string]*Parser{}
	for name, cfg := range map[string]string{
		"json": `format = "json"` + typed, "kv": `format = "kv"` + typed, "json-any": `format = "json"`, "kv-any": `format = "kv"`,
		"regex": `format = "regex"` + "\nregex = 'T:(?P<temperature>\\S+)C H:(?P<humidity>\\S+)%'",
	} {
		var c Config
		if err := serialtest.Decoder("port = \"/x\"\n" + cfg)(&c); err != nil {
			f.Fatal(err)
		}
		d, err := New(devices.Env{}, c)
		if err != nil {
			f.Fatal(err)
		}
		parsers[name] = d.Parser.(*Parser)
	}
	f.Fuzz(func(t *testing.T, line string) {
		for name, p := range parsers {
			r, reason := p.Parse(line)
			if reason != "" {
				continue
			}
			for _, fl := range r.Fields {
				switch v := fl.Value.(type) {
				case float64:
					if v != v || v > 1e308 || v < -1e308 {
						t.Fatalf("%s: non-finite %v", name, v)
					}
				case int64, bool, string:
				default:
					t.Fatalf("%s: value of type %T", name, v)
				}
				if spec, ok := p.fields[fl.Name]; ok {
					want := map[string]string{"float": "float64", "int": "int64", "bool": "bool", "string": "string"}[spec.Type]
					if got := fmt.Sprintf("%T", fl.Value); got != want {
						t.Fatalf("%s: field %s is %s, configured %s", name, fl.Name, got, spec.Type)
					}
				}
			}
		}
		c := new(serialport.Counters)
		p := parsers["json"]
		p.Counts = c
		p.Feed([]byte(line+"\n"), func(devices.Reading) {})
	})
}
