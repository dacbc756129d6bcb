package gateway

import (
	"bytes"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgegw/edgegw/internal/tlsx"
)

// Metrics are written by hand in the Prometheus text exposition format
// (version 0.0.4) rather than with client_golang: the numbers already live in
// the parts' Stats snapshots, so a registry would only copy them, and on an
// ARMv6 build client_golang adds about 4.4 MB of binary and 4–7 MB of
// resident memory (docs/board.md, Figures, has the measurement). Names follow the
// Prometheus conventions: _total for counters, base units, one family per
// name written together.

// promWriter writes one exposition.
type promWriter struct {
	b    bytes.Buffer
	name string // family being written
}

// family starts a metric family: HELP and TYPE.
func (w *promWriter) family(name, typ, help string) {
	w.name = name
	w.b.WriteString("# HELP " + name + " ")
	w.b.WriteString(strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(help))
	w.b.WriteString("\n# TYPE " + name + " " + typ + "\n")
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

// sample writes one sample of the current family; labels are name, value
// pairs.
func (w *promWriter) sample(v float64, labels ...string) {
	w.b.WriteString(w.name)
	if len(labels) > 0 {
		w.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.b.WriteString(labels[i] + `="` + labelEscaper.Replace(labels[i+1]) + `"`)
		}
		w.b.WriteByte('}')
	}
	w.b.WriteByte(' ')
	switch {
	case math.IsInf(v, 1):
		w.b.WriteString("+Inf")
	case math.IsInf(v, -1):
		w.b.WriteString("-Inf")
	case math.IsNaN(v):
		w.b.WriteString("NaN")
	default:
		w.b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	}
	w.b.WriteByte('\n')
}

// one writes a family with a single unlabelled sample.
func (w *promWriter) one(name, typ, help string, v float64) {
	w.family(name, typ, help)
	w.sample(v)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// knownDropReasons are always exposed, so a rate() works from the first scrape.
var knownDropReasons = []string{"full_oldest", "full_newest", "expired", "corrupt", "storage"}

// certCache keeps certificate expiry for a minute: reading and parsing the
// files on every scrape would be waste on a Pi.
type certCache struct {
	mu    sync.Mutex
	at    time.Time
	certs []tlsx.CertInfo
	err   error
}

func (c *certCache) get(o tlsx.Options) ([]tlsx.CertInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) > time.Minute {
		c.certs, c.err = tlsx.Expiry(o)
		c.at = time.Now()
	}
	return c.certs, c.err
}

// writeMetrics renders every metric.
func (g *Gateway) writeMetrics() []byte {
	s := g.Status()
	w := &promWriter{}
	o := &g.ops

	w.one("edgegw_ready", "gauge", "1 once the broker, the bridge and the devices are up.", b2f(s.Ready))
	w.one("edgegw_start_time_seconds", "gauge", "Start time of the gateway, seconds since the Unix epoch.", float64(o.started.UnixNano())/1e9)
	stale := []string(nil)
	if o.live != nil {
		stale = o.live.stale()
	}
	w.one("edgegw_main_loops_stale", "gauge", "Main loops (bridge session, broker, device publish steps) that are not responding; while above 0 the systemd watchdog is not pinged.", float64(len(stale)))
	if c := o.clock; c != nil {
		c.mu.Lock()
		synced := c.synced
		c.mu.Unlock()
		w.one("edgegw_clock_synced", "gauge", "1 when the system clock was synchronised at the last reading (else readings carry ts_uncertain).", b2f(synced))
		w.one("edgegw_clock_steps_total", "counter", "Steps of the wall clock seen against the monotonic clock (NTP sync, date -s).", float64(c.steps.Load()))
		w.one("edgegw_readings_ts_uncertain_total", "counter", "Readings stamped while the system clock was not synchronised.", float64(c.uncertain.Load()))
	}

	// Devices.
	w.family("edgegw_device_up", "gauge", "1 while the device's driver runs.")
	for _, d := range s.Devices {
		w.sample(b2f(d.Up), "device", d.Name, "type", d.Type)
	}
	w.family("edgegw_device_readings_total", "counter", "Readings published by the device.")
	for _, d := range s.Devices {
		w.sample(float64(d.Readings), "device", d.Name, "type", d.Type)
	}
	w.family("edgegw_device_failures_total", "counter", "Times the device's driver failed and was restarted (unplugged, bus error, reopen).")
	for _, d := range s.Devices {
		w.sample(float64(d.Failures), "device", d.Name, "type", d.Type)
	}
	w.family("edgegw_device_events_total", "counter", "Driver counters by reason: bad frames by cause, CRC errors, duplicates suppressed, reopens…")
	for _, d := range s.Devices {
		keys := make([]string, 0, len(d.Counters))
		for k := range d.Counters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			w.sample(float64(d.Counters[k]), "device", d.Name, "type", d.Type, "reason", k)
		}
	}

	// Broker.
	w.one("edgegw_broker_clients", "gauge", "Clients connected to the local broker (the gateway's own inline clients included).", float64(s.Broker.Clients))
	w.one("edgegw_broker_messages_received_total", "counter", "PUBLISH messages the local broker received.", float64(s.Broker.MessagesReceived))
	w.one("edgegw_broker_messages_sent_total", "counter", "PUBLISH messages the local broker sent to subscribers.", float64(s.Broker.MessagesSent))
	w.one("edgegw_broker_subscriptions", "gauge", "Subscriptions on the local broker.", float64(s.Broker.Subscriptions))
	w.one("edgegw_broker_retained", "gauge", "Retained messages on the local broker.", float64(s.Broker.Retained))
	w.one("edgegw_broker_inflight", "gauge", "QoS 1/2 exchanges in progress on the local broker.", float64(s.Broker.Inflight))
	w.one("edgegw_broker_connections", "gauge", "Open network connections to the local broker ([broker] max_connections caps them).", float64(s.Broker.Connections))
	w.family("edgegw_broker_clients_refused_total", "counter", "Local clients disconnected or refused by a [broker] limit, topic protection or the password file, by reason.")
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"slow_consumer", s.Broker.SlowClientsDropped},
		{"connect_timeout", s.Broker.ConnectTimeouts},
		{"packet_too_large", s.Broker.OversizedPackets},
		{"max_connections", s.Broker.ConnectionsRefused},
		{"forged_reading", s.Broker.ForgedReadings},
		{"forged_command", s.Broker.ForgedCommands},
		{"bad_credentials", s.Broker.AuthRefused},
	} {
		w.sample(float64(r.n), "reason", r.reason)
	}
	w.one("edgegw_broker_acl_denied_total", "counter", "Publishes, subscriptions and deliveries the [broker] acl_file denied.", float64(s.Broker.ACLDenied))

	// Bridge and outbox.
	if br := s.Bridge; br != nil {
		w.family("edgegw_bridge_link_up", "gauge", "1 while the upstream MQTT session is up.")
		w.sample(b2f(br.LinkUp), "endpoint", br.Endpoint)
		w.one("edgegw_bridge_connects_total", "counter", "Upstream sessions established.", float64(br.Connects))
		w.one("edgegw_bridge_connect_failures_total", "counter", "Upstream connection attempts that failed (refused, TLS, timeout).", float64(br.ConnectFailures))
		w.one("edgegw_bridge_link_downs_total", "counter", "Upstream sessions that were up and went down.", float64(br.LinkDowns))
		w.one("edgegw_bridge_inflight", "gauge", "QoS 1/2 messages sent upstream and not yet acknowledged.", float64(br.Inflight))
		w.one("edgegw_bridge_sent_total", "counter", "PUBLISH packets sent upstream (resends included).", float64(br.SentPublish))
		w.one("edgegw_bridge_acked_total", "counter", "QoS 1/2 messages acknowledged by upstream.", float64(br.Acked))
		w.one("edgegw_bridge_received_total", "counter", "Messages that came down from upstream and were delivered locally.", float64(br.Received))
		w.one("edgegw_bridge_refused_total", "counter", "Local messages the outbox refused (buffer full under drop_newest or block).", float64(br.Refused))
		w.one("edgegw_bridge_duplicates_avoided_total", "counter", "QoS 2 resends from local publishers recognised as already stored.", float64(br.DuplicatesAvoided))
		w.one("edgegw_bridge_qos0_dropped_total", "counter", "QoS 0 messages dropped from the memory ring (full during an outage).", float64(br.QoS0Dropped))
		w.one("edgegw_bridge_qos0_queued", "gauge", "QoS 0 messages waiting in memory.", float64(br.QoS0Queued))
		w.one("edgegw_bridge_flaps_total", "counter", "Upstream sessions that went down within 10 s of CONNACK or without acknowledging anything (the backoff keeps growing).", float64(br.Flaps))
		w.one("edgegw_bridge_window", "gauge", "In-flight window of the upstream session: min(inflight, the server's Receive Maximum).", float64(br.Window))
		w.one("edgegw_bridge_transient_refusals_total", "counter", "Messages the upstream broker refused for now (quota exceeded, busy), backed off and resent.", float64(br.TransientRefusals))
		w.one("edgegw_bridge_dead_lettered_total", "counter", "Messages the upstream broker refused for good, moved to the dead-letter store.", float64(br.DeadLettered))
		w.one("edgegw_bridge_dead_letter_dropped_total", "counter", "Messages refused for good that the dead-letter store could not keep (full).", float64(br.DeadLetterDropped))
		if br.DeadLetter != nil {
			w.one("edgegw_bridge_dead_letters", "gauge", "Messages held in the dead-letter store.", float64(br.DeadLetter.Entries))
		}
		ob := br.Outbox
		w.one("edgegw_outbox_messages", "gauge", "Backlog: messages not yet acknowledged upstream (on disk, queued for it, or in memory; see edgegw_outbox_memory_messages).", float64(ob.Messages))
		w.one("edgegw_outbox_bytes", "gauge", "Backlog: bytes of outbox segment files on disk.", float64(ob.Bytes))
		w.one("edgegw_outbox_oldest_age_seconds", "gauge", "Age of the oldest unacknowledged message (segment granularity).", ob.OldestAge.Seconds())
		w.one("edgegw_outbox_appended_total", "counter", "Messages appended to the outbox.", float64(ob.Appended))
		w.one("edgegw_outbox_acked_total", "counter", "Outbox messages acknowledged upstream.", float64(ob.Acked))
		w.one("edgegw_outbox_replayed_total", "counter", "Outbox messages sent again after a reconnect.", float64(ob.Replayed))
		w.family("edgegw_outbox_dropped_total", "counter", "Messages dropped from the outbox, by reason.")
		reasons := append([]string(nil), knownDropReasons...)
		for r := range ob.Dropped {
			if !contains(reasons, r) {
				reasons = append(reasons, r)
			}
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			w.sample(float64(ob.Dropped[r]), "reason", r)
		}
		w.one("edgegw_outbox_full", "gauge", "1 during a full-buffer episode.", b2f(ob.Full))
		w.one("edgegw_outbox_blocked_total", "counter", "Appends that waited for space under full_policy block.", float64(ob.Blocked))
		w.one("edgegw_outbox_tail_cut_bytes_total", "counter", "Bytes of torn or corrupt tail cut off at start.", float64(ob.TailCutBytes))
		w.one("edgegw_outbox_skipped_bytes_total", "counter", "Damaged bytes skipped in the middle of outbox segments.", float64(ob.SkippedBytes))
		w.one("edgegw_outbox_storage_failing", "gauge", "1 while a storage error makes the outbox refuse messages.", b2f(ob.StorageError != ""))
		w.one("edgegw_outbox_written_bytes_total", "counter", "Bytes written to outbox files (records and ack log).", float64(ob.BytesWritten))
		w.one("edgegw_outbox_fsyncs_total", "counter", "fsync calls made by the outbox.", float64(ob.Fsyncs))
		w.one("edgegw_outbox_memory_messages", "gauge", "Messages waiting in memory for their upstream acknowledgement (not on disk).", float64(ob.InMemory))
		w.one("edgegw_outbox_memory_bytes", "gauge", "Record bytes of the messages waiting in memory.", float64(ob.InMemoryBytes))
		w.one("edgegw_outbox_memory_acked_total", "counter", "Messages acknowledged upstream while only in memory: never written.", float64(ob.MemoryAcked))
		w.family("edgegw_outbox_to_disk_total", "counter", "Messages written to disk, by why: link_down, slow_ack, window_full, stopping, qos2, disk.")
		toDisk := make([]string, 0, len(ob.ToDisk))
		for r := range ob.ToDisk {
			toDisk = append(toDisk, r)
		}
		sort.Strings(toDisk)
		for _, r := range toDisk {
			w.sample(float64(ob.ToDisk[r]), "reason", r)
		}
	}

	// TLS certificates.
	if g.cfg.Upstream != nil && g.cfg.Upstream.TLS != nil {
		certs, err := o.certs.get(g.tlsOpts)
		w.family("edgegw_tls_cert_days_left", "gauge", "Whole days until each certificate of [upstream.tls] expires (negative once expired).")
		for _, c := range certs {
			w.sample(float64(c.DaysLeft), "path", c.Path, "subject", c.Subject)
		}
		w.one("edgegw_tls_cert_read_errors", "gauge", "1 when the certificate files could not be read for the expiry check.", b2f(err != nil))
	}

	// Sparkplug B edge node.
	g.mu.Lock()
	eco := g.eco
	g.mu.Unlock()
	if eco != nil && eco.sp != nil {
		st := eco.sp.Stats()
		w.one("edgegw_sparkplug_stored", "gauge", "Readings kept while the link is down, waiting for the next birth.", float64(st.Stored))
		w.one("edgegw_sparkplug_dropped_total", "counter", "Readings dropped from a full Sparkplug store (oldest first).", float64(st.Dropped))
		w.one("edgegw_sparkplug_historical_total", "counter", "Readings sent as historical DDATA after a birth.", float64(st.Historical))
		w.one("edgegw_sparkplug_commands_refused_total", "counter", "NCMD/DCMD not carried out: not Sparkplug B, unknown device or metric.", float64(st.CommandsRefused))
		w.one("edgegw_sparkplug_queue_dropped_total", "counter", "Readings dropped because the Sparkplug node was behind (its queue of readings was full; the upstream link slow or stalled).", float64(st.QueueDropped))
		w.one("edgegw_sparkplug_bad_readings_total", "counter", "Payloads on a device topic that are not the gateway's JSON (a local program publishing there).", float64(st.BadReadings))
	}

	// Process.
	w.one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", float64(rssBytes()))
	w.one("go_goroutines", "gauge", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.one("go_memstats_heap_inuse_bytes", "gauge", "Bytes in in-use heap spans.", float64(ms.HeapInuse))
	w.one("go_memstats_sys_bytes", "gauge", "Bytes obtained from the system.", float64(ms.Sys))
	return w.b.Bytes()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// rssBytes reads the resident set size from /proc/self/statm (0 if absent).
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
