package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBoardsCommand(t *testing.T) {
	dir := t.TempDir()
	pi5 := filepath.Join(dir, "pi5")
	other := filepath.Join(dir, "other")
	os.WriteFile(pi5, []byte("Raspberry Pi 5 Model B Rev 1.0\x00"), 0o644)
	os.WriteFile(other, []byte("Xunlong Orange Pi Zero2\x00"), 0o644)
	cases := []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"boards"}, exitOK, "rpi-zero-w", ""},
		{[]string{"boards", "rpi5"}, exitOK, "pinctrl-rp1", ""},
		{[]string{"boards", "bbb"}, exitOK, "P9_12   GPIO60", ""},
		{[]string{"boards", "nope"}, exitUsage, "", "unknown board"},
		{[]string{"boards", "--detect", "--model-file", pi5}, exitOK, "rpi5", ""},
		{[]string{"boards", "--detect", "--model-file", other}, exitFailure, "", "no profile for model \"Xunlong Orange Pi Zero2\""},
		{[]string{"boards", "--detect", "--model-file", filepath.Join(dir, "missing")}, exitFailure, "", "read model"},
		{[]string{"boards", "--bogus"}, exitUsage, "", "flag provided but not defined"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.err) {
			t.Errorf("%v: code %d, stdout %q, stderr %q", c.args, code, out.String(), errb.String())
		}
	}
}
