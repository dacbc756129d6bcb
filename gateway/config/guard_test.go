package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNestingRefusedBeforeParsing: deeply nested arrays and inline tables
// are refused, with the line, before the TOML parser sees them (32 KB of
// nested inline tables made it use gigabytes). Brackets in strings and
// comments do not count, and table headers are not nesting.
func TestNestingRefusedBeforeParsing(t *testing.T) {
	head := "[gateway]\nid = \"gw-01\"\n"
	cases := []struct {
		name     string
		src      string
		wantLine int // 0: no nesting error
	}{
		{"32 KB of nested inline tables", head + "x = " + strings.Repeat("{a=", 8000) + "1" + strings.Repeat("}", 8000) + "\n", 3},
		{"nested arrays, 17 deep", head + "\n\nx = " + strings.Repeat("[", 17) + strings.Repeat("]", 17) + "\n", 5},
		{"16 deep is allowed", head + "x = " + strings.Repeat("[", 16) + strings.Repeat("]", 16) + "\n", 0},
		{"multi-line array, deep on its 4th line", head + "x = [\n[\n[\n" + strings.Repeat("{a=", 20) + "\n", 6},
		{"brackets in strings", head + "y = \"" + strings.Repeat("[{", 40) + "\"\nz = '" + strings.Repeat("[", 40) + "'\n", 0},
		{"brackets in a multi-line string", head + "y = \"\"\"\n" + strings.Repeat("[", 40) + "\n\"\"\"\n", 0},
		{"brackets in a comment", head + "# " + strings.Repeat("[", 40) + "\n", 0},
		{"table headers", head + strings.Repeat("[[device]]\nname = \"d\"\n", 40) + "[upstream.tls]\n", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("gw.toml", tc.src)
			var es Errors
			nesting := false
			if e, ok := err.(Errors); ok {
				es = e
				for _, e := range es {
					if strings.Contains(e.Msg, "nest") {
						nesting = true
						if e.Line != tc.wantLine {
							t.Errorf("nesting reported at line %d, want %d: %v", e.Line, tc.wantLine, e)
						}
					}
				}
			}
			if nesting != (tc.wantLine > 0) {
				t.Fatalf("nesting error = %v, want %v; got: %v", nesting, tc.wantLine > 0, err)
			}
		})
	}
}

// TestRealConfigsPassNestingCheck: the example and test configurations in
// the repository are not refused.
func TestRealConfigsPassNestingCheck(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/*.toml")
	files2, _ := filepath.Glob("../../deploy/*/*.toml")
	files = append(files, files2...)
	if len(files) == 0 {
		t.Skip("no example configuration found under deploy/")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if line, depth := checkNesting(string(b)); line > 0 {
			t.Errorf("%s:%d: nesting %d reported in a real configuration", f, line, depth)
		}
	}
}

// TestOversizedFileRefused: a file over MaxFileSize is refused by Load
// without being parsed.
func TestOversizedFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.toml")
	big := "[gateway]\nid = \"gw-01\"\n" + strings.Repeat("# padding\n", MaxFileSize/10+1)
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load of a %d-byte file: %v", len(big), err)
	}
}
