package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/syncbuf"
)

// toxiproxyVersion is the pinned fault injector (the module proxy's
// @latest resolves to an old release).
const toxiproxyVersion = "v2.12.0"

var (
	toxiOnce sync.Once
	toxiBin  string
	toxiErr  error
)

// toxiproxyServer builds Toxiproxy's server once per test binary.
func toxiproxyServer(t testing.TB) string {
	t.Helper()
	toxiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edgegw-toxiproxy")
		if err != nil {
			toxiErr = err
			return
		}
		cmd := exec.Command("go", "install", "github.com/Shopify/toxiproxy/v2/cmd/server@"+toxiproxyVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			toxiErr = fmt.Errorf("go install toxiproxy %s: %v\n%s", toxiproxyVersion, err, out)
			return
		}
		toxiBin = filepath.Join(dir, "server")
	})
	if toxiErr != nil {
		t.Fatal(toxiErr)
	}
	return toxiBin
}

// toxi is a running Toxiproxy with its HTTP API.
type toxi struct {
	t   testing.TB
	api string
}

// startToxiproxy runs Toxiproxy on loopback until the test ends.
func startToxiproxy(t testing.TB) *toxi {
	t.Helper()
	port := mosquittotest.FreePort(t)
	cmd := exec.Command(toxiproxyServer(t), "-host", "127.0.0.1", "-port", fmt.Sprint(port))
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("toxiproxy log (tail):\n%s", tail(out.String(), 30))
		}
	})
	x := &toxi{t: t, api: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(x.api + "/version")
		if err == nil {
			resp.Body.Close()
			return x
		}
		if time.Now().After(deadline) {
			t.Fatalf("toxiproxy did not answer within 10s: %v\n%s", err, out.String())
		}
		select {
		case <-done:
			t.Fatalf("toxiproxy exited:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (x *toxi) call(method, path string, body any) []byte {
	x.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, x.api+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		x.t.Fatalf("toxiproxy %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		x.t.Fatalf("toxiproxy %s %s: %s: %s", method, path, resp.Status, b)
	}
	return b
}

// proxy creates a proxy to upstream and returns the address to dial.
func (x *toxi) proxy(name, upstream string) string {
	x.t.Helper()
	port := mosquittotest.FreePort(x.t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	x.call("POST", "/proxies", map[string]any{"name": name, "listen": listen, "upstream": upstream, "enabled": true})
	return listen
}

// toxic adds a toxic (both directions when stream is "").
func (x *toxi) toxic(proxy, name, typ, stream string, attrs map[string]any) {
	x.t.Helper()
	streams := []string{stream}
	if stream == "" {
		streams = []string{"upstream", "downstream"}
	}
	for _, s := range streams {
		x.call("POST", "/proxies/"+proxy+"/toxics", map[string]any{"name": name + "_" + s, "type": typ, "stream": s, "toxicity": 1.0, "attributes": attrs})
	}
}

// untoxic removes a toxic added by toxic.
func (x *toxi) untoxic(proxy, name, stream string) {
	x.t.Helper()
	streams := []string{stream}
	if stream == "" {
		streams = []string{"upstream", "downstream"}
	}
	for _, s := range streams {
		x.call("DELETE", "/proxies/"+proxy+"/toxics/"+name+"_"+s, nil)
	}
}

// enable turns a proxy on or off (off closes its connections: a cut).
func (x *toxi) enable(proxy string, on bool) {
	x.t.Helper()
	x.call("POST", "/proxies/"+proxy, map[string]any{"enabled": on})
}
