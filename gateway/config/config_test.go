package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgegw/edgegw/internal/duration"
)

const good = `
[gateway]
id = "gw-01"
data_dir = "/tmp/edgegw"

[upstream]
address = "mqtts://127.0.0.1:8883"
[upstream.tls]
cafile = "CA"
certfile = "CERT"
keyfile = "KEY"
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
remote_prefix = "sites/s1/gw-01/"

[buffer]
max_bytes = "64MiB"

[[device]]
name = "door"
type = "rdm6300"
port = "/dev/ttyS0"

[[device]]
name = "sim1"
type = "sim"
`

func withFiles(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"CA", "CERT", "KEY"} {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		src = strings.ReplaceAll(src, `"`+f+`"`, `"`+p+`"`)
	}
	return src
}

func TestGoodConfig(t *testing.T) {
	c, err := Parse("gw.toml", withFiles(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.ID != "gw-01" || c.Buffer.MaxBytes.Bytes != 64<<20 || c.Buffer.Fsync != "batch" {
		t.Fatalf("decoded wrong: %+v", c)
	}
	if len(c.Devices) != 2 || c.Devices[0].Topic != "readings/door" || c.Devices[0].QoS != 1 {
		t.Fatalf("devices: %+v", c.Devices)
	}
	if c.Upstream == nil || c.Upstream.Keepalive.Duration == 0 || c.Upstream.Topics[0].RemotePrefix != "sites/s1/gw-01/" {
		t.Fatalf("upstream: %+v", c.Upstream)
	}
	for _, a := range []string{"mqtt://127.0.0.1:1883", "127.0.0.1:1883", "tcp://localhost"} {
		src := withFiles(t, strings.Replace(good, "[buffer]", "[broker]\nexternal = \""+a+"\"\nexternal_username = \"gw\"\n[buffer]", 1))
		c, err := Parse("gw.toml", src)
		if err != nil {
			t.Fatalf("external = %q refused: %v", a, err)
		}
		if hp, err := ExternalAddress(c.Broker.External); err != nil || hp == "" || c.Broker.ExternalUsername != "gw" {
			t.Fatalf("external = %q decoded as %q, %v, user %q", a, hp, err, c.Broker.ExternalUsername)
		}
	}
	var drv struct {
		Port string `toml:"port"`
	}
	if err := c.Devices[0].Decode(&drv); err != nil || drv.Port != "/dev/ttyS0" {
		t.Fatalf("driver decode: %v %+v", err, drv)
	}
	var strictDrv struct {
		Baud int `toml:"baud"`
	}
	err = c.Devices[0].Decode(&strictDrv)
	if err == nil || !strings.Contains(err.Error(), "gw.toml:24: device[0].port: unknown key") {
		t.Fatalf("driver without port key should refuse it with its line, got %v", err)
	}
}

// TestBadConfigs is a table of real mistakes: each must name the key and the
// line where it was made.
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, from, to string
		want           []string // substrings of one error line each
	}{
		{"misspelt key", `data_dir = "/tmp/edgegw"`, `data_dri = "/tmp/edgegw"`,
			[]string{`gw.toml:4: gateway.data_dri: unknown key "data_dri" (did you mean "data_dir"?)`}},
		{"unknown table", "[buffer]", "[bufer]",
			[]string{`gw.toml:18: bufer: unknown key "bufer"`}},
		{"wrong type", `qos = 1`, `qos = "1"`,
			[]string{`gw.toml:15: upstream.topic[0].qos: wants a whole number, not the string "1"`}},
		{"bad direction", `direction = "out"`, `direction = "up"`,
			[]string{`gw.toml:14: upstream.topic[0].direction: "up" is not allowed: one of "out", "in", "both"`}},
		{"bad qos", `qos = 1`, `qos = 3`,
			[]string{`gw.toml:15: upstream.topic[0].qos: 3 is not a QoS`}},
		{"bad size", `max_bytes = "64MiB"`, `max_bytes = "64 megs"`,
			[]string{`gw.toml:19: buffer.max_bytes: "64 megs" is not a size`}},
		{"missing id", `id = "gw-01"`, ``,
			[]string{`gw.toml:2: gateway.id: is required`}},
		{"duplicate device name", `name = "sim1"`, `name = "door"`,
			[]string{`gw.toml:27: device[1].name: "door" is already the name of device[0]`}},
		{"bad address scheme", `mqtts://127.0.0.1:8883`, `https://127.0.0.1:8883`,
			[]string{`gw.toml:7: upstream.address: "https://127.0.0.1:8883": scheme "https" is not one of`}},
		{"missing cafile", `certfile = "CERT"`, `certfile = "/nonexistent/client.crt"`,
			[]string{`gw.toml:10: upstream.tls.certfile: "/nonexistent/client.crt": no such file or directory`}},
		{"wildcard misuse", `pattern = "readings/#"`, `pattern = "readings/#/x"`,
			[]string{`gw.toml:13: upstream.topic[0].pattern: "readings/#/x" is not a valid filter`}},
		{"bad fsync", `max_bytes = "64MiB"`, "max_bytes = \"64MiB\"\nfsync = \"sometimes\"",
			[]string{`gw.toml:20: buffer.fsync: "sometimes" is not allowed: one of "always", "batch", "interval"`}},
		{"bad durability", `max_bytes = "64MiB"`, "max_bytes = \"64MiB\"\ndurability = \"flash\"",
			[]string{`gw.toml:20: buffer.durability: "flash" is not allowed: one of "memory", "disk"`}},
		{"zero spill_after", `max_bytes = "64MiB"`, "max_bytes = \"64MiB\"\nspill_after = \"0s\"",
			[]string{`gw.toml:20: buffer.spill_after: "0s" must be above zero`}},
		{"tiny memory_bytes", `max_bytes = "64MiB"`, "max_bytes = \"64MiB\"\nmemory_bytes = \"1KiB\"",
			[]string{`gw.toml:20: buffer.memory_bytes: "1KiB" must be at least 4KiB`}},
		{"syntax error", `[buffer]`, `[buffer`,
			[]string{`gw.toml:18: TOML syntax:`}},
		{"two mistakes reported together", `data_dir = "/tmp/edgegw"`, "data_dir = 5\nlog_level = \"loud\"",
			[]string{`gw.toml:4: gateway.data_dir: wants a string, not the number 5`, `gw.toml:5: gateway.log_level: "loud" is not allowed`}},
		{"bad clock", `data_dir = "/tmp/edgegw"`, "data_dir = \"/tmp/edgegw\"\nclock = \"rtc\"",
			[]string{`gw.toml:5: gateway.clock: "rtc" is not allowed: one of "auto", "trusted"`}},
		{"bad duration", `[buffer]`, "[buffer]\nmax_age = \"3 days\"",
			[]string{`gw.toml:19: buffer.max_age: "3 days" is not a duration`}},
		{"external broker over TLS", `[buffer]`, "[broker]\nexternal = \"mqtts://127.0.0.1:8883\"\n[buffer]",
			[]string{`gw.toml:19: broker.external: "mqtts://127.0.0.1:8883": TLS to the local broker is not supported`}},
		{"external password file missing", `[buffer]`, "[broker]\nexternal = \"mqtt://127.0.0.1:1883\"\nexternal_password_file = \"/nonexistent/pw\"\n[buffer]",
			[]string{`gw.toml:20: broker.external_password_file: "/nonexistent/pw": no such file or directory`}},
		{"external login without external", `[buffer]`, "[broker]\nexternal_username = \"gw\"\n[buffer]",
			[]string{`broker.external: is required with external_username`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.from) {
				t.Fatalf("test case does not apply: %q not in config", tc.from)
			}
			src := withFiles(t, strings.Replace(good, tc.from, tc.to, 1))
			_, err := Parse("gw.toml", src)
			if err == nil {
				t.Fatal("bad config accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q; it says:\n%v", w, err)
				}
			}
		})
	}
}

func TestDeviceErrorPositions(t *testing.T) {
	c, err := Parse("gw.toml", withFiles(t, good))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Devices[0].DeviceError(errString("port: /dev/nope does not look like a serial port"))
	if got := e.Error(); got != "gw.toml:24: device[0].port: /dev/nope does not look like a serial port" {
		t.Fatalf("got %q", got)
	}
	e = c.Devices[0].DeviceError(errors.Join(errString("baud: 9601 is not standard"), errString("port: missing")))
	if got := e.Error(); got != "gw.toml:21: device[0] (door): baud: 9601 is not standard\ngw.toml:24: device[0].port: missing" {
		t.Fatalf("joined: got %q", got)
	}
	e = c.Devices[1].DeviceError(errString("no such driver"))
	if got := e.Error(); got != "gw.toml:26: device[1] (sim1): no such driver" {
		t.Fatalf("got %q", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestLineIndex(t *testing.T) {
	src := "a = 1\n[t]\nb = \"\"\"\nx = 2\n\"\"\"\nc = [\n 1,\n 2]\n[[arr]]\nk = 1\n[arr.sub]\nz = 1\n[[arr]]\nk = 2\n'q.k'.r = 3\n"
	idx := indexLines(src)
	for path, want := range map[string]int{"a": 1, "t.b": 3, "t.c": 6, "arr[0].k": 10, "arr[0].sub.z": 12, "arr[1].k": 14, "arr[1].q.k.r": 15} {
		if got := idx.line(path); got != want {
			t.Errorf("%s: line %d, want %d", path, got, want)
		}
	}
	if _, ok := idx["t.x"]; ok {
		t.Error("a line inside a multi-line string was taken for a key")
	}
}

func TestUnknownDriverKeyInSecondDevice(t *testing.T) {
	src := withFiles(t, strings.Replace(good, `type = "sim"`, "type = \"sim\"\nrate = \"fast\"\nintervl = \"1s\"", 1))
	c, err := Parse("gw.toml", src)
	if err != nil {
		t.Fatal(err)
	}
	var sim struct {
		Rate     string `toml:"rate"`
		Interval string `toml:"interval"`
	}
	err = c.Devices[1].Decode(&sim)
	if err == nil || !strings.Contains(err.Error(), `gw.toml:30: device[1].intervl: unknown key "intervl" (did you mean "interval"?)`) {
		t.Fatalf("got %v", err)
	}
}

// TestDriverValueRefusedByItsType: a driver value its type refuses at
// decoding (a bad or negative duration) is named with its key and its own
// line, not the device's header line.
func TestDriverValueRefusedByItsType(t *testing.T) {
	cases := []struct{ value, want string }{
		{`"soon"`, `gw.toml:30: device[1].dedupe: "soon" is not a duration (write it like "500ms"`},
		{`"-1s"`, `gw.toml:30: device[1].dedupe: "-1s" is negative`},
	}
	for _, tc := range cases {
		src := withFiles(t, strings.Replace(good, `type = "sim"`, "type = \"sim\"\nrate = \"fast\"\ndedupe = "+tc.value, 1))
		c, err := Parse("gw.toml", src)
		if err != nil {
			t.Fatal(err)
		}
		var drv struct {
			Rate   string            `toml:"rate"`
			Dedupe duration.Duration `toml:"dedupe"`
		}
		err = c.Devices[1].Decode(&drv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dedupe = %s: got %v, want %q", tc.value, err, tc.want)
		}
	}
}

// TestExampleConfig keeps deploy/edgegw.example.toml valid: it must parse
// once the files it names exist (here: replaced by temporary ones).
func TestExampleConfig(t *testing.T) {
	src, err := os.ReadFile("../../deploy/edgegw.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := string(src)
	for _, f := range []string{"/etc/edgegw/ca.crt", "/etc/edgegw/client.crt", "/etc/edgegw/client.key"} {
		p := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		s = strings.ReplaceAll(s, `"`+f+`"`, `"`+p+`"`)
	}
	c, err := Parse("edgegw.example.toml", s)
	if err != nil {
		t.Fatalf("the example configuration does not parse:\n%v", err)
	}
	if c.Upstream == nil || len(c.Upstream.Topics) != 1 || len(c.Devices) != 1 || c.Upstream.BackoffMax.Duration.String() != "2s" {
		t.Fatalf("example decoded wrong: %+v", c)
	}
}
