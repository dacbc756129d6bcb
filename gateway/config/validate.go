package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/edgegw/edgegw/internal/topic"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// validate checks values (not shapes) and reports each problem with its key.
// It touches the file system only to stat the files the config names, so a
// missing certificate is caught by check-config rather than at 3 a.m.
func (c *Config) validate(report func(path, msg string)) {
	g := &c.Gateway
	if g.ID == "" {
		report("gateway.id", "is required: a short name for this gateway, e.g. id = \"gw-01\" (used in client IDs and payloads)")
	} else if !idPattern.MatchString(g.ID) {
		report("gateway.id", fmt.Sprintf("%q may hold only letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit", g.ID))
	}
	if g.DataDir == "" {
		report("gateway.data_dir", "must not be empty: the outbox and sequence numbers live there")
	}
	oneOf(report, "gateway.log_level", g.LogLevel, "debug", "info", "warn", "error")
	oneOf(report, "gateway.log_format", g.LogFormat, "text", "json")
	oneOf(report, "gateway.clock", g.Clock, "auto", "trusted")
	if g.HTTPListen != "" && !validHostPort(g.HTTPListen) {
		report("gateway.http_listen", fmt.Sprintf("%q is not host:port (e.g. \"127.0.0.1:9100\"; empty turns the HTTP endpoint off)", g.HTTPListen))
	}

	b := &c.Broker
	if b.Listen != "" && !validHostPort(b.Listen) {
		report("broker.listen", fmt.Sprintf("%q is not host:port (e.g. \"127.0.0.1:1883\")", b.Listen))
	}
	if b.External != "" {
		if _, err := ExternalAddress(b.External); err != nil {
			report("broker.external", err.Error())
		}
	} else if b.ExternalUsername != "" || b.ExternalPasswordFile != "" {
		report("broker.external", "is required with external_username or external_password_file (they log in to an external broker)")
	}
	validateBrokerLimits(report, b)
	fileExists(report, "broker.external_password_file", b.ExternalPasswordFile)
	fileExists(report, "broker.password_file", b.PasswordFile)
	fileExists(report, "broker.acl_file", b.ACLFile)
	if b.TLS != nil {
		if !validHostPort(b.TLS.Listen) {
			report("broker.tls.listen", fmt.Sprintf("%q is not host:port (e.g. \"0.0.0.0:8883\")", b.TLS.Listen))
		}
		if b.TLS.CertFile == "" || b.TLS.KeyFile == "" {
			report("broker.tls", "a TLS listener needs certfile and keyfile")
		}
		if b.TLS.RequireCertificate && b.TLS.CAFile == "" && b.TLS.CAPath == "" {
			report("broker.tls.require_certificate", "needs cafile or capath: the CA that signs the clients' certificates")
		}
		c.validateTLS(report, "broker.tls", &b.TLS.TLS)
	}

	if u := c.Upstream; u != nil {
		if len(u.Address) == 0 {
			report("upstream.address", "is required, e.g. address = \"mqtts://broker.example.com:8883\" (or a list for failover)")
		}
		anyTLS := false
		for _, a := range u.Address {
			useTLS, _, err := ParseAddress(a)
			if err != nil {
				report("upstream.address", err.Error())
			}
			anyTLS = anyTLS || useTLS
		}
		if anyTLS && u.TLS == nil {
			report("upstream.tls", "is required for an mqtts:// address: add [upstream.tls] with cafile, certfile and keyfile (run 'edgegw certs init' to make them)")
		}
		if u.TLS != nil {
			c.validateTLS(report, "upstream.tls", u.TLS)
		}
		oneOf(report, "upstream.protocol", u.Protocol, "3.1.1", "5")
		checkDuration(report, "upstream.keepalive", u.Keepalive)
		checkDuration(report, "upstream.backoff_min", u.BackoffMin)
		checkDuration(report, "upstream.backoff_max", u.BackoffMax)
		checkDuration(report, "upstream.connect_timeout", u.ConnectTimeout)
		if u.Inflight < 1 || u.Inflight > 65535 {
			report("upstream.inflight", fmt.Sprintf("%d is out of range: 1 to 65535 messages in flight", u.Inflight))
		}
		if u.ReplayRate < 0 {
			report("upstream.replay_rate", "must not be negative (messages per second; 0 = as fast as upstream accepts)")
		}
		checkSize(report, "upstream.max_payload", u.MaxPayload)
		fileExists(report, "upstream.password_file", u.PasswordFile)
		if len(u.Topics) == 0 {
			report("upstream", "has no [[upstream.topic]] rule, so nothing would be bridged; add one, e.g. pattern = \"readings/#\", direction = \"out\"")
		}
		for i, t := range u.Topics {
			p := fmt.Sprintf("upstream.topic[%d]", i)
			if t.Pattern == "" {
				report(p+".pattern", "is required, e.g. \"readings/#\"")
			} else if err := topic.ValidFilter(t.Pattern); err != nil {
				report(p+".pattern", fmt.Sprintf("%q is not a valid filter: %v", t.Pattern, err))
			}
			if t.Direction == "" {
				u.Topics[i].Direction = "out"
			} else {
				oneOf(report, p+".direction", t.Direction, "out", "in", "both")
			}
			if t.QoS < 0 || t.QoS > 2 {
				report(p+".qos", fmt.Sprintf("%d is not a QoS: 0, 1 or 2", t.QoS))
			}
			for _, k := range []struct{ key, v string }{{"local_prefix", t.LocalPrefix}, {"remote_prefix", t.RemotePrefix}} {
				if strings.ContainsAny(k.v, "+#") {
					report(p+"."+k.key, fmt.Sprintf("%q must not hold wildcards + or #", k.v))
				}
			}
		}
	}

	if c.Upstream != nil {
		c.validateProfile(report)
	}

	bf := &c.Buffer
	checkSize(report, "buffer.max_bytes", bf.MaxBytes)
	checkSize(report, "buffer.qos0_max_bytes", bf.QoS0MaxBytes)
	checkSize(report, "buffer.segment_bytes", bf.SegmentBytes)
	checkDuration(report, "buffer.max_age", bf.MaxAge)
	checkDuration(report, "buffer.fsync_interval", bf.FsyncInterval)
	checkDuration(report, "buffer.commit_interval", bf.CommitInterval)
	oneOf(report, "buffer.full_policy", bf.FullPolicy, "drop_oldest", "drop_newest", "block")
	oneOf(report, "buffer.fsync", bf.Fsync, "always", "batch", "interval")
	oneOf(report, "buffer.durability", bf.Durability, "memory", "disk")
	checkDuration(report, "buffer.spill_after", bf.SpillAfter)
	checkSize(report, "buffer.memory_bytes", bf.MemoryBytes)
	if bf.SpillAfter.err == nil && bf.SpillAfter.Duration <= 0 {
		report("buffer.spill_after", fmt.Sprintf("%q must be above zero, e.g. \"1s\"", bf.SpillAfter.raw))
	}
	if bf.MemoryBytes.err == nil && bf.MemoryBytes.Bytes < 4<<10 {
		report("buffer.memory_bytes", fmt.Sprintf("%q must be at least 4KiB (use durability = \"disk\" to keep nothing in memory)", bf.MemoryBytes.raw))
	}
	if bf.Fsync == "interval" && bf.FsyncInterval.Duration == 0 {
		bf.FsyncInterval.Duration = 1e9
	}
	if bf.SegmentBytes.err == nil && bf.SegmentBytes.Bytes != 0 && bf.SegmentBytes.Bytes < 64<<10 {
		report("buffer.segment_bytes", "must be at least 64KiB")
	}

	names := map[string]int{}
	for i := range c.Devices {
		dv := &c.Devices[i]
		p := dv.Path()
		if dv.Name == "" {
			report(p+".name", "is required: a short unique name, e.g. name = \"door\"")
		} else if !idPattern.MatchString(dv.Name) {
			report(p+".name", fmt.Sprintf("%q may hold only letters, digits, '.', '_' and '-'", dv.Name))
		} else if j, dup := names[dv.Name]; dup {
			report(p+".name", fmt.Sprintf("%q is already the name of device[%d]; names must be unique", dv.Name, j))
		} else {
			names[dv.Name] = i
		}
		if dv.Type == "" {
			report(p+".type", "is required, e.g. type = \"rdm6300\" (run 'edgegw devices' for the list)")
		}
		if dv.Topic == "" && dv.Name != "" {
			dv.Topic = "readings/" + dv.Name
		} else if msg := checkTopic(dv.Topic); dv.Topic != "" && msg != "" {
			report(p+".topic", fmt.Sprintf("%q %s", dv.Topic, msg))
		}
		if dv.QoS < 0 || dv.QoS > 2 {
			report(p+".qos", fmt.Sprintf("%d is not a QoS: 0, 1 or 2", dv.QoS))
		}
	}
}

func (c *Config) validateTLS(report func(path, msg string), p string, t *TLS) {
	if t.CAFile != "" && t.CAPath != "" {
		report(p+".capath", "give cafile or capath, not both")
	}
	if st, err := statFile(t.CAFile); err == nil && st.IsDir() {
		report(p+".cafile", fmt.Sprintf("%q is a directory; a directory of CA certificates goes in capath", t.CAFile))
	} else {
		fileExists(report, p+".cafile", t.CAFile)
	}
	if st, err := statFile(t.CAPath); err == nil && !st.IsDir() {
		report(p+".capath", fmt.Sprintf("%q is a file; a single CA certificate file goes in cafile", t.CAPath))
	} else {
		fileExists(report, p+".capath", t.CAPath)
	}
	fileExists(report, p+".certfile", t.CertFile)
	fileExists(report, p+".keyfile", t.KeyFile)
	if (t.CertFile == "") != (t.KeyFile == "") {
		report(p, "certfile and keyfile go together: give both or neither")
	}
	if t.TLSVersion != "" {
		switch t.TLSVersion {
		case "1.2", "1.3", "tlsv1.2", "tlsv1.3":
		default:
			report(p+".tls_version", fmt.Sprintf("%q is not allowed: \"1.2\" or \"1.3\" (the minimum version)", t.TLSVersion))
		}
	}
	if t.CAFile == "" && t.CAPath == "" && !t.Insecure && p == "upstream.tls" {
		report(p+".cafile", "is required: the CA certificate that signed the upstream broker's certificate")
	}
}

func statFile(path string) (os.FileInfo, error) {
	if path == "" {
		return nil, os.ErrNotExist
	}
	return os.Stat(path)
}

func fileExists(report func(path, msg string), key, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		report(key, fmt.Sprintf("%q: %v", path, unwrapPathErr(err)))
	}
}

func oneOf(report func(path, msg string), key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	report(key, fmt.Sprintf("%q is not allowed: one of %s", v, quoteList(allowed)))
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

func checkDuration(report func(path, msg string), key string, v Duration) {
	if p := v.problem(); p != "" {
		report(key, p)
	}
}

func checkSize(report func(path, msg string), key string, v Size) {
	if p := v.problem(); p != "" {
		report(key, p)
	}
}

// checkTopic returns "" for a valid MQTT topic name, else what is wrong.
func checkTopic(t string) string {
	if strings.ContainsAny(t, "+#") {
		return "must not hold wildcards + or #"
	}
	if strings.HasPrefix(t, "$") {
		return "must not start with $ (reserved for the broker)"
	}
	return ""
}
