package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/edgegw/edgegw/gateway"
)

// TestDeadLetterCmdOffline: with no gateway running, the command lists the
// store and applies replay and drop itself (replay into the outbox).
func TestDeadLetterCmdOffline(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "gw.toml")
	os.WriteFile(cfg, []byte("[gateway]\nid = \"gw\"\ndata_dir = \""+data+"\"\n"), 0o600)
	st, err := deadletter.Open(deadletter.Options{Dir: gateway.DeadLetterDir(data)})
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"sites/a", "sites/b"} {
		if _, err := st.Add(deadletter.Entry{Code: 0x87, Cause: "the server refused it: 0x87 not authorized", Topic: topic, QoS: 1, Payload: []byte("p " + topic)}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"list"}, exitOK, "2 dead letters"},
		{[]string{"replay", "1"}, exitOK, "replayed 1, dropped 0"},
		{[]string{"replay", "7"}, exitFailure, "no entry 7"},
		{[]string{"drop", "x"}, exitUsage, `"x" is not an entry id`},
		{[]string{"drop", "all"}, exitOK, "replayed 0, dropped 1"},
		{[]string{"list"}, exitOK, "no dead letters"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(append([]string{"deadletter", "-c", cfg}, c.args...), &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", c.args, code, c.code, c.want, out.String(), errb.String())
		}
	}
	ob, err := outbox.Open(outbox.Options{Dir: filepath.Join(data, "outbox")})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := ob.Next(ctx)
	if err != nil || m.Topic != "sites/a" || string(m.Payload) != "p sites/a" || m.QoS != 1 {
		t.Fatalf("the replayed message in the outbox: %+v %v", m, err)
	}
}
