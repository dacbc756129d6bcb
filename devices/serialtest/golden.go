package serialtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/edgegw/edgegw/devices"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// Golden is the expected outcome of replaying a device's byte stream: the
// readings in order (Time left out) and the counters. It is what
// testdata/expected.json holds.
type Golden struct {
	Readings []GoldenReading `json:"readings"`
	Counters devices.Stats   `json:"counters"`
}

// GoldenReading is a Reading as the golden file writes it.
type GoldenReading struct {
	UID    string        `json:"uid,omitempty"`
	Fields []GoldenField `json:"fields,omitempty"`
}

// GoldenField is a Field with its Go type spelled out, so that an int64
// turning into a float64 is caught.
type GoldenField struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	Type  string `json:"type"`
	Unit  string `json:"unit,omitempty"`
}

// MakeGolden renders readings and counters in the golden form.
func MakeGolden(rs []devices.Reading, stats devices.Stats) Golden {
	g := Golden{Readings: []GoldenReading{}, Counters: stats}
	for _, r := range rs {
		gr := GoldenReading{UID: r.UID}
		for _, f := range r.Fields {
			gr.Fields = append(gr.Fields, GoldenField{Name: f.Name, Value: f.Value, Type: fmt.Sprintf("%T", f.Value), Unit: f.Unit})
		}
		g.Readings = append(g.Readings, gr)
	}
	return g
}

// JSON is the indented encoding written to expected.json.
func (g Golden) JSON() []byte {
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		panic(err) // only plain values inside
	}
	return append(b, '\n')
}

// CheckGolden compares got with the file at path, or rewrites the file when
// the test runs with -update.
func CheckGolden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run the test with -update to create it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("golden %s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Decoder returns a devices.Decoder over a TOML snippet (the keys of one
// `[[device]]` table), strict like the gateway's loader: a key the driver
// does not decode is an error.
func Decoder(snippet string) devices.Decoder {
	return func(v any) error {
		md, err := toml.Decode(snippet, v)
		if err != nil {
			return err
		}
		if und := md.Undecoded(); len(und) > 0 {
			var errs []error
			for _, k := range und {
				errs = append(errs, fmt.Errorf("%s: unknown key", k))
			}
			return errors.Join(errs...)
		}
		return nil
	}
}
