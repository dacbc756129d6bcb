package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigListsEveryProblem: mistakes in the file and in a device's
// own keys come out together, in line order, each with its line.
func TestCheckConfigListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.toml")
	src := `[gateway]
id = "gw-01"
data_dir = "` + dir + `/data"
data_dri = "/x"

[[device]]
name = "door"
type = "rdm6300"
port = "/dev/serial0"
baud = 9601

[[device]]
name = "sim1"
type = "sim"
intervl = "1s"
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"check-config", "-c", path}, &out, &errb)
	if code != exitConfig {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, errb.String())
	}
	want := []string{
		path + `:4: gateway.data_dri: unknown key "data_dri" (did you mean "data_dir"?)`,
		path + `:10: device[0].baud: 9601 is not a standard rate`,
		path + `:15: device[1].intervl: unknown key "intervl" (did you mean "interval"?)`,
		"3 problems found",
	}
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), errb.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s…", i+1, lines[i], w)
		}
	}
}
