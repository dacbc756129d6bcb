package gateway

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// warnHTTPListen warns when the health and metrics endpoint is reachable
// from the network: it has no authentication, and /status and /metrics tell
// anyone the gateway's devices, topics and upstream address (as the broker
// warns about anonymous network listeners).
func warnHTTPListen(log *slog.Logger, addr string) {
	if !isLoopback(addr) {
		log.Warn("the health and metrics endpoint is reachable from the network without authentication (/status and /metrics show devices, topics and the upstream address); set [gateway] http_listen = \"127.0.0.1:9100\" unless a firewall or proxy guards it", "http_listen", addr)
	}
}

// httpHandler serves the health and metrics endpoint ([gateway] http_listen):
//
//	/healthz  200 while every main loop responds and the outbox can store,
//	          503 naming the stuck ones or the storage error
//	/readyz   503 until the gateway is up, then 200; the body says the
//	          upstream link state when an upstream is configured
//	/metrics  Prometheus text format (metrics.go)
//	/status   JSON snapshot for `edgegw status`
func (g *Gateway) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if stale := g.ops.live.stale(); len(stale) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "stuck: %s\n", strings.Join(stale, ", "))
			return
		}
		if err := g.outboxErr(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "storage failing, messages refused: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		s := g.Status()
		if !s.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting")
			return
		}
		if err := g.outboxErr(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "storage failing, messages refused: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ready")
		if br := s.Bridge; br != nil {
			if br.LinkUp {
				fmt.Fprintf(w, "upstream: up %s\n", br.Endpoint)
			} else {
				fmt.Fprintf(w, "upstream: down (%s)\n", br.LastError)
			}
			fmt.Fprintf(w, "backlog: %d messages\n", br.Outbox.Messages)
		}
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(g.writeMetrics())
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.statusDoc())
	})
	return mux
}

// StatusDoc is the JSON the /status endpoint serves and `edgegw status`
// prints.
type StatusDoc struct {
	Gateway       string       `json:"gateway"`
	Ready         bool         `json:"ready"`
	UptimeSeconds float64      `json:"uptime_seconds"`
	ClockSynced   bool         `json:"clock_synced"`
	StuckLoops    []string     `json:"stuck_loops,omitempty"`
	Devices       []DeviceDoc  `json:"devices"`
	Broker        BrokerDoc    `json:"broker"`
	Upstream      *UpstreamDoc `json:"upstream,omitempty"`
	Certificates  []CertDoc    `json:"certificates,omitempty"`
}

// DeviceDoc is one device in StatusDoc.
type DeviceDoc struct {
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Up        bool              `json:"up"`
	Readings  uint64            `json:"readings"`
	Failures  uint64            `json:"failures"`
	LastError string            `json:"last_error,omitempty"`
	Counters  map[string]uint64 `json:"counters,omitempty"`
}

// BrokerDoc is the local broker in StatusDoc.
type BrokerDoc struct {
	Clients          int64 `json:"clients"`
	MessagesReceived int64 `json:"messages_received"`
	MessagesSent     int64 `json:"messages_sent"`
}

// UpstreamDoc is the bridge in StatusDoc.
type UpstreamDoc struct {
	LinkUp           bool              `json:"link_up"`
	Endpoint         string            `json:"endpoint"`
	LastError        string            `json:"last_error,omitempty"`
	Connects         uint64            `json:"connects"`
	ConnectFailures  uint64            `json:"connect_failures"`
	Inflight         int               `json:"inflight"`
	Acked            uint64            `json:"acked"`
	BacklogMessages  uint64            `json:"backlog_messages"`
	BacklogBytes     uint64            `json:"backlog_bytes"`
	OldestAgeSeconds float64           `json:"oldest_age_seconds"`
	Dropped          map[string]uint64 `json:"dropped,omitempty"`
	QoS0Dropped      uint64            `json:"qos0_dropped"`
	// InMemory messages wait in memory for their upstream ack; MemoryAcked
	// were acked from memory (never written); ToDisk says why the others
	// were written.
	InMemory    uint64            `json:"memory_messages"`
	MemoryAcked uint64            `json:"memory_acked"`
	ToDisk      map[string]uint64 `json:"to_disk,omitempty"`
	Flaps       uint64            `json:"flaps"`
	Window      int               `json:"window"`
	// DeadLetters is how many refused messages the dead-letter store holds;
	// DeadLetterDropped those refused for good that could not be kept.
	DeadLetters       int    `json:"dead_letters"`
	DeadLetterDropped uint64 `json:"dead_letter_dropped,omitempty"`
	QoS2Downgraded    bool   `json:"qos2_downgraded,omitempty"`
}

// CertDoc is one certificate's expiry in StatusDoc.
type CertDoc struct {
	Path     string `json:"path"`
	Subject  string `json:"subject"`
	DaysLeft int    `json:"days_left"`
}

func (g *Gateway) statusDoc() StatusDoc {
	s := g.Status()
	o := &g.ops
	doc := StatusDoc{Gateway: g.cfg.Gateway.ID, Ready: s.Ready, UptimeSeconds: time.Since(o.started).Seconds()}
	if o.live != nil {
		doc.StuckLoops = o.live.stale()
	}
	if o.clock != nil {
		o.clock.mu.Lock()
		doc.ClockSynced = o.clock.synced
		o.clock.mu.Unlock()
	}
	for _, d := range s.Devices {
		doc.Devices = append(doc.Devices, DeviceDoc{Name: d.Name, Type: d.Type, Up: d.Up, Readings: d.Readings, Failures: d.Failures, LastError: d.LastError, Counters: d.Counters})
	}
	doc.Broker = BrokerDoc{Clients: s.Broker.Clients, MessagesReceived: s.Broker.MessagesReceived, MessagesSent: s.Broker.MessagesSent}
	if br := s.Bridge; br != nil {
		doc.Upstream = &UpstreamDoc{LinkUp: br.LinkUp, Endpoint: br.Endpoint, LastError: br.LastError, Connects: br.Connects,
			ConnectFailures: br.ConnectFailures, Inflight: br.Inflight, Acked: br.Acked, BacklogMessages: br.Outbox.Messages,
			BacklogBytes: br.Outbox.Bytes, OldestAgeSeconds: br.Outbox.OldestAge.Seconds(), Dropped: br.Outbox.Dropped, QoS0Dropped: br.QoS0Dropped,
			InMemory: br.Outbox.InMemory, MemoryAcked: br.Outbox.MemoryAcked, ToDisk: br.Outbox.ToDisk,
			Flaps: br.Flaps, Window: br.Window, DeadLetterDropped: br.DeadLetterDropped, QoS2Downgraded: br.QoS2Downgraded}
		if br.DeadLetter != nil {
			doc.Upstream.DeadLetters = br.DeadLetter.Entries
		}
	}
	if g.cfg.Upstream != nil && g.cfg.Upstream.TLS != nil {
		certs, _ := o.certs.get(g.tlsOpts)
		for _, c := range certs {
			doc.Certificates = append(doc.Certificates, CertDoc{Path: c.Path, Subject: c.Subject, DaysLeft: c.DaysLeft})
		}
	}
	return doc
}

// outboxErr is the outbox's storage error while it refuses messages (disk
// full, read-only file system), nil when healthy or without an outbox.
func (g *Gateway) outboxErr() error {
	g.mu.Lock()
	ob := g.outbox
	g.mu.Unlock()
	if ob == nil {
		return nil
	}
	return ob.Err()
}
