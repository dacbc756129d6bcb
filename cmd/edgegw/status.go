package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/gateway/config"
)

func init() {
	register(command{name: "status", summary: "show the running gateway's state (from its HTTP endpoint)", run: statusCmd})
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "", "the gateway's http_listen address (default: from -c, else from "+config.DefaultPath+", else 127.0.0.1:9100)")
	path := fs.String("c", "", "read http_listen from this configuration file")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	target := *addr
	if target == "" && *path != "" {
		cfg, err := config.Load(*path)
		if err != nil {
			printConfigErrors(stderr, err)
			return exitConfig
		}
		if cfg.Gateway.HTTPListen == "" {
			fmt.Fprintf(stderr, "edgegw status: %s turns the HTTP endpoint off ([gateway] http_listen = \"\"); set it to e.g. \"127.0.0.1:9100\" and restart\n", *path)
			return exitUsage
		}
		target = cfg.Gateway.HTTPListen
	}
	if target == "" {
		// The installed configuration, when it is there and valid; else the
		// default address.
		target = config.Default().Gateway.HTTPListen
		if cfg, err := config.Load(config.DefaultPath); err == nil && cfg.Gateway.HTTPListen != "" {
			target = cfg.Gateway.HTTPListen
		}
	}
	target = dialable(target)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + target + "/status")
	if err != nil {
		fmt.Fprintf(stderr, "edgegw status: cannot reach the gateway at http://%s: %v\n(is it running? systemctl status edgegw; journalctl -u edgegw -e)\n", target, err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "edgegw status: http://%s/status answered %s: %v\n", target, resp.Status, err)
		return exitFailure
	}
	if *asJSON {
		stdout.Write(body)
		return exitOK
	}
	var doc gateway.StatusDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		fmt.Fprintf(stderr, "edgegw status: http://%s/status is not the gateway's status JSON: %v\n", target, err)
		return exitFailure
	}
	printStatus(stdout, doc)
	if !doc.Ready || len(doc.StuckLoops) > 0 {
		return exitFailure
	}
	return exitOK
}

// dialable turns a listen address such as ":9100" or "0.0.0.0:9100" into
// one to connect to.
func dialable(a string) string {
	switch {
	case strings.HasPrefix(a, ":"):
		return "127.0.0.1" + a
	case strings.HasPrefix(a, "0.0.0.0:"):
		return "127.0.0.1" + strings.TrimPrefix(a, "0.0.0.0")
	case strings.HasPrefix(a, "[::]:"):
		return "[::1]" + strings.TrimPrefix(a, "[::]")
	}
	return a
}

func printStatus(w io.Writer, d gateway.StatusDoc) {
	state := "running"
	if !d.Ready {
		state = "starting"
	}
	fmt.Fprintf(w, "gateway %s: %s for %s\n", d.Gateway, state, (time.Duration(d.UptimeSeconds) * time.Second).String())
	if len(d.StuckLoops) > 0 {
		fmt.Fprintf(w, "  STUCK: %s (systemd's watchdog will restart the gateway)\n", strings.Join(d.StuckLoops, ", "))
	}
	if !d.ClockSynced {
		fmt.Fprintln(w, "  clock: NOT synchronised; readings carry \"ts_uncertain\": true")
	}
	if u := d.Upstream; u != nil {
		if u.LinkUp {
			fmt.Fprintf(w, "upstream: up, %s (%d connects, %d failed attempts)\n", u.Endpoint, u.Connects, u.ConnectFailures)
		} else {
			fmt.Fprintf(w, "upstream: DOWN, %s: %s\n", u.Endpoint, u.LastError)
		}
		fmt.Fprintf(w, "  backlog: %d messages, %d bytes, oldest %.0fs; in flight %d of %d; acked %d\n", u.BacklogMessages, u.BacklogBytes, u.OldestAgeSeconds, u.Inflight, u.Window, u.Acked)
		var toDisk []string
		for r, n := range u.ToDisk {
			if n > 0 {
				toDisk = append(toDisk, fmt.Sprintf("%s %d", r, n))
			}
		}
		sort.Strings(toDisk)
		if len(toDisk) == 0 {
			toDisk = []string{"none"}
		}
		fmt.Fprintf(w, "  memory: %d waiting for upstream, %d acked from memory (never written); written to disk: %s\n", u.InMemory, u.MemoryAcked, strings.Join(toDisk, ", "))
		if u.Flaps > 0 {
			fmt.Fprintf(w, "  flaps: %d (sessions that went down soon after they came up)\n", u.Flaps)
		}
		if u.DeadLetters > 0 || u.DeadLetterDropped > 0 {
			fmt.Fprintf(w, "  dead letters: %d held (refused by the broker for good; edgegw deadletter list)", u.DeadLetters)
			if u.DeadLetterDropped > 0 {
				fmt.Fprintf(w, ", %d DROPPED (store full)", u.DeadLetterDropped)
			}
			fmt.Fprintln(w)
		}
		if u.QoS2Downgraded {
			fmt.Fprintln(w, "  QoS 2: the broker does not do exactly-once; QoS 2 rules are delivered at least once")
		}
		var drops []string
		for r, n := range u.Dropped {
			if n > 0 {
				drops = append(drops, fmt.Sprintf("%s %d", r, n))
			}
		}
		if u.QoS0Dropped > 0 {
			drops = append(drops, fmt.Sprintf("qos0 %d", u.QoS0Dropped))
		}
		sort.Strings(drops)
		if len(drops) > 0 {
			fmt.Fprintf(w, "  dropped: %s\n", strings.Join(drops, ", "))
		}
	} else {
		fmt.Fprintln(w, "upstream: none configured")
	}
	fmt.Fprintf(w, "broker: %d clients, %d messages in, %d out\n", d.Broker.Clients, d.Broker.MessagesReceived, d.Broker.MessagesSent)
	fmt.Fprintf(w, "devices: %d\n", len(d.Devices))
	for _, dv := range d.Devices {
		st := "up"
		if !dv.Up {
			st = "DOWN"
		}
		fmt.Fprintf(w, "  %-16s %-10s %-4s readings %d, failures %d", dv.Name, dv.Type, st, dv.Readings, dv.Failures)
		if dv.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", dv.LastError)
		}
		fmt.Fprintln(w)
	}
	for _, c := range d.Certificates {
		warn := ""
		if c.DaysLeft < 30 {
			warn = "  <- renew soon"
		}
		fmt.Fprintf(w, "certificate %s: %d days left%s\n", c.Path, c.DaysLeft, warn)
	}
}
