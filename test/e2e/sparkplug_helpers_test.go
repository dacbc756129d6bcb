package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The independent Sparkplug B implementation the test decodes with: Eclipse
// Tahu's JavaScript codec, npm sparkplug-payload, at a fixed version,
// installed once into a cache directory.
const tahuVersion = "1.0.3"

var (
	tahuOnce sync.Once
	tahuDir  string
	tahuErr  error
)

// tahu returns the directory with node_modules/sparkplug-payload, installing
// it when missing. Without node or npm the test fails in CI and skips
// elsewhere, naming the fix.
func tahu(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is not installed: run 'make deps' as root (it installs Debian's nodejs and npm)"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	tahuOnce.Do(func() {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		tahuDir = filepath.Join(base, "edgegw-test", "sparkplug-payload-"+tahuVersion)
		if _, err := os.Stat(filepath.Join(tahuDir, "node_modules", "sparkplug-payload", "package.json")); err == nil {
			return
		}
		if err := os.MkdirAll(tahuDir, 0o755); err != nil {
			tahuErr = err
			return
		}
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--prefix", tahuDir, "sparkplug-payload@"+tahuVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			tahuErr = &buildError{"npm install sparkplug-payload@" + tahuVersion + ": " + err.Error() + "\n" + string(out)}
		}
	})
	if tahuErr != nil {
		t.Fatal(tahuErr)
	}
	return tahuDir
}

// tahuScript decodes {"topic","b64"} lines with sparkplug-payload and prints
// one JSON line per message, 64-bit numbers as JSON numbers; "encode" mode
// encodes a JSON payload and prints it in base64.
const tahuScript = `
const dir = process.argv[2];
const sp = require(dir + "/node_modules/sparkplug-payload").get("spBv1.0");
const Long = require(dir + "/node_modules/long");
const plain = (k, v) => (v && typeof v === "object" && "low" in v && "high" in v && "unsigned" in v) ? Long.fromValue(v).toNumber() : v;
if (process.argv[3] === "encode") {
  process.stdout.write(Buffer.from(sp.encodePayload(JSON.parse(process.argv[4]))).toString("base64"));
  process.exit(0);
}
const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
for (const l of lines) {
  const m = JSON.parse(l);
  const out = {topic: m.topic};
  try { out.payload = sp.decodePayload(Buffer.from(m.b64, "base64")); } catch (e) { out.error = String(e); }
  console.log(JSON.stringify(out, plain));
}
`

// spDecoded is one message as Tahu decoded it.
type spDecoded struct {
	Topic   string `json:"topic"`
	Error   string `json:"error"`
	Payload struct {
		Timestamp int64 `json:"timestamp"`
		Seq       *int  `json:"seq"`
		Metrics   []struct {
			Name         string `json:"name"`
			Type         string `json:"type"`
			Value        any    `json:"value"`
			IsHistorical bool   `json:"isHistorical"`
			IsNull       bool   `json:"isNull"`
			Timestamp    int64  `json:"timestamp"`
			Properties   map[string]struct {
				Type  string `json:"type"`
				Value any    `json:"value"`
			} `json:"properties"`
		} `json:"metrics"`
	} `json:"payload"`
	raw string
}

func (d spDecoded) metric(name string) (any, bool) {
	for _, m := range d.Payload.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return nil, false
}

func tahuRun(t *testing.T, args []string, stdin []byte) []byte {
	t.Helper()
	dir := tahu(t)
	script := filepath.Join(t.TempDir(), "tahu.js")
	if err := os.WriteFile(script, []byte(tahuScript), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", append([]string{script, dir}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// tahuDecode decodes messages (topic, payload) in order.
func tahuDecode(t *testing.T, topics []string, payloads [][]byte) []spDecoded {
	t.Helper()
	var in bytes.Buffer
	for i := range topics {
		b, _ := json.Marshal(map[string]string{"topic": topics[i], "b64": base64.StdEncoding.EncodeToString(payloads[i])})
		in.Write(b)
		in.WriteByte('\n')
	}
	out := tahuRun(t, nil, in.Bytes())
	var res []spDecoded
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d spDecoded
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("decoder output %q: %v", sc.Text(), err)
		}
		d.raw = sc.Text()
		res = append(res, d)
	}
	if len(res) != len(topics) {
		t.Fatalf("decoded %d of %d messages", len(res), len(topics))
	}
	return res
}

// tahuEncode encodes a payload given as JSON in Tahu's form.
func tahuEncode(t *testing.T, payload string) []byte {
	t.Helper()
	out := tahuRun(t, []string{"encode", payload}, nil)
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
