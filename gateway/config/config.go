// Package config is edgegw's TOML schema: the structs below are the schema,
// defaults are filled in one place (Default), and Load checks a file strictly:
// every unknown key, wrong type and bad value is reported with its file and
// line, all of them at once.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where `edgegw run` looks without -c.
const DefaultPath = "/etc/edgegw/gateway.toml"

// Config is the whole file.
type Config struct {
	Gateway  Gateway   `toml:"gateway"`
	Broker   Broker    `toml:"broker"`
	Upstream *Upstream `toml:"upstream"`
	Buffer   Buffer    `toml:"buffer"`
	Devices  []Device  `toml:"-"` // decoded by hand: each driver has its own keys

	Availability  Availability  `toml:"availability"`
	HomeAssistant HomeAssistant `toml:"homeassistant"`
	Sparkplug     Sparkplug     `toml:"sparkplug"`

	file  string
	lines lineIndex
	md    toml.MetaData
	prims []toml.Primitive
}

// Gateway is the [gateway] table.
type Gateway struct {
	ID         string `toml:"id"`
	DataDir    string `toml:"data_dir"`
	LogLevel   string `toml:"log_level"`  // debug | info | warn | error
	LogFormat  string `toml:"log_format"` // text | json
	HTTPListen string `toml:"http_listen"`
	// Clock is "auto" (readings stamped while the system clock is not
	// NTP-synchronised carry "ts_uncertain": true) or "trusted" (a board
	// with a real-time clock and no network time: never flag).
	Clock string `toml:"clock"`
	Board string `toml:"board"` // board profile name; "" = detect
}

// Broker is the [broker] table: the local broker.
type Broker struct {
	// Listen is the embedded broker's plain TCP listener ("" = none, in-process only).
	Listen string `toml:"listen"`
	// External, when set ("mqtt://127.0.0.1:1883"), uses an existing broker
	// (Mosquitto on the board) instead of the embedded one.
	External string `toml:"external"`
	// ExternalUsername and ExternalPasswordFile log the gateway in to the
	// external broker (the file holds the password).
	ExternalUsername     string     `toml:"external_username"`
	ExternalPasswordFile string     `toml:"external_password_file"`
	PasswordFile         string     `toml:"password_file"`
	ACLFile              string     `toml:"acl_file"`
	AllowAnonymous       *bool      `toml:"allow_anonymous"`
	TLS                  *BrokerTLS `toml:"tls"`

	// What one network client may cost the embedded broker, all applied
	// before authentication (broker.Limits).
	MaxPacketSize  Size     `toml:"max_packet_size"` // largest packet accepted
	MaxConnections int      `toml:"max_connections"` // concurrent network connections
	ConnectTimeout Duration `toml:"connect_timeout"` // from accept to CONNECT, TLS handshake included
	WriteTimeout   Duration `toml:"write_timeout"`   // one write to a client; a slower one is disconnected
	ClientQueue    Size     `toml:"client_queue"`    // bytes waiting for one client; more disconnects it
	// ProtectTopics (default true) reserves the devices' reading topics for
	// the gateway and the command topics for messages from upstream.
	ProtectTopics *bool `toml:"protect_topics"`
}

// BrokerTLS is [broker.tls]: an optional TLS listener on the local broker.
type BrokerTLS struct {
	Listen string `toml:"listen"`
	TLS
	RequireCertificate bool `toml:"require_certificate"`
}

// TLS holds certificate settings shared by [upstream.tls] and [broker.tls].
type TLS struct {
	CAFile              string `toml:"cafile"`
	CAPath              string `toml:"capath"`
	CertFile            string `toml:"certfile"`
	KeyFile             string `toml:"keyfile"`
	KeyfilePasswordFile string `toml:"keyfile_password_file"`
	TLSVersion          string `toml:"tls_version"` // "1.2" | "1.3" (minimum)
	ServerName          string `toml:"server_name"`
	Insecure            bool   `toml:"insecure"`
}

// Upstream is the [upstream] table: the remote broker and the bridge rules.
type Upstream struct {
	Address      Addresses `toml:"address"`
	ClientID     string    `toml:"client_id"`
	Username     string    `toml:"username"`
	PasswordFile string    `toml:"password_file"`
	CleanSession bool      `toml:"clean_session"`
	Keepalive    Duration  `toml:"keepalive"`
	Protocol     string    `toml:"protocol"` // "3.1.1" | "5"
	Inflight     int       `toml:"inflight"` // bounded in-flight window of QoS 1/2 messages
	ReplayRate   int       `toml:"replay_rate"`
	// Profile names the kind of broker ("generic", "aws-iot-core",
	// "azure-iot-hub"): it sets safe defaults and check-config names rules
	// that broker cannot carry.
	Profile string `toml:"profile"`
	// MaxPayload is the largest payload sent upstream; a larger message
	// goes to the dead-letter store (0 = no limit but the server's).
	MaxPayload Size     `toml:"max_payload"`
	BackoffMin Duration `toml:"backoff_min"`
	BackoffMax Duration `toml:"backoff_max"`
	// ConnectTimeout bounds dialing, the TLS handshake and the wait for
	// CONNACK; a GPRS-class link (1.5 s each way) needs more than the 10 s
	// default.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// LiveFirst sends messages that arrive while a backlog drains ahead of
	// it (off by default: per topic, a live message may then arrive before
	// older backlog messages).
	LiveFirst bool    `toml:"live_first"`
	TLS       *TLS    `toml:"tls"`
	Topics    []Topic `toml:"topic"`
}

// Topic is one [[upstream.topic]] bridge rule, like Mosquitto's
// `topic pattern direction qos local-prefix remote-prefix`.
type Topic struct {
	Pattern      string `toml:"pattern"`
	Direction    string `toml:"direction"` // out | in | both
	QoS          int    `toml:"qos"`
	LocalPrefix  string `toml:"local_prefix"`
	RemotePrefix string `toml:"remote_prefix"`
}

// Buffer is the [buffer] table: the outbox.
type Buffer struct {
	MaxBytes      Size     `toml:"max_bytes"`
	MaxAge        Duration `toml:"max_age"`
	FullPolicy    string   `toml:"full_policy"` // drop_oldest | drop_newest | block
	Fsync         string   `toml:"fsync"`       // always | batch | interval
	FsyncInterval Duration `toml:"fsync_interval"`
	QoS0MaxBytes  Size     `toml:"qos0_max_bytes"`
	SegmentBytes  Size     `toml:"segment_bytes"`
	// CommitInterval is how often, at most, messages the uplink is not
	// waiting for are committed to disk (group commit): wear against the
	// wait of a local publisher's PUBACK while the link is down.
	CommitInterval Duration `toml:"commit_interval"`
	// Durability is where a QoS 1 message must be before its local PUBACK:
	// "memory" (safe upstream or on disk: written only when it must be) or
	// "disk" (on disk, always: every message written and synced first).
	Durability string `toml:"durability"`
	// SpillAfter is how long a message waits in memory for its upstream
	// acknowledgement before it is written.
	SpillAfter Duration `toml:"spill_after"`
	// MemoryBytes bounds the memory window.
	MemoryBytes Size `toml:"memory_bytes"`
}

// Device is one [[device]] table. Its driver-specific keys are decoded by the
// driver through Decode.
type Device struct {
	Name  string `toml:"name"`
	Type  string `toml:"type"`
	Topic string `toml:"topic"`
	QoS   int    `toml:"qos"`
	// Interval etc. belong to drivers.

	index int
	cfg   *Config
}

// commonDeviceKeys are consumed by the gateway, not by drivers.
var commonDeviceKeys = map[string]bool{"name": true, "type": true, "topic": true, "qos": true}

// Error is one problem in the file, with its position.
type Error struct {
	File string
	Line int
	Key  string // dotted path, e.g. "device[1].baud"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file. Load returns it (as error) when
// there is at least one.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Default returns the configuration with every default filled in.
//
// These are the user-facing defaults, the ones the README documents and
// validation checks against. The packages that own the behaviour keep the
// same values as exported constants for zero Options fields
// (broker.Default*, bridge.Default*, outbox.Default*); this package imports
// none of ours, so the values are written here as well, and
// TestConfigDefaultsAreThePackagesDefaults in package gateway fails when
// one side changes alone.
func Default() Config {
	return Config{
		Gateway: Gateway{
			DataDir:    "/var/lib/edgegw",
			LogLevel:   "info",
			LogFormat:  "text",
			HTTPListen: "127.0.0.1:9100",
			Clock:      "auto",
		},
		Broker: Broker{
			Listen:         "127.0.0.1:1883",
			MaxPacketSize:  Size{Bytes: 256 << 10},
			MaxConnections: 64,
			ConnectTimeout: Duration{Duration: 10e9},
			WriteTimeout:   Duration{Duration: 10e9},
			ClientQueue:    Size{Bytes: 1 << 20},
		},
		HomeAssistant: HomeAssistant{DiscoveryPrefix: "homeassistant"},
		Buffer: Buffer{
			MaxBytes:     Size{Bytes: 256 << 20},
			FullPolicy:   "drop_oldest",
			Fsync:        "batch",
			QoS0MaxBytes: Size{Bytes: 1 << 20},
			SegmentBytes: Size{Bytes: 8 << 20},
			Durability:   "memory",
			SpillAfter:   Duration{Duration: 1e9},
			MemoryBytes:  Size{Bytes: 1 << 20},
			// Measured on ext4, link down, 100-byte messages (the wear
			// benchmark in bridge/outbox): 1 s brings 20 msg/s from 151
			// to about 7 block-device bytes per payload byte.
			CommitInterval: Duration{Duration: 2e9},
		},
	}
}

// defaultUpstream fills [upstream]'s defaults (bridge.Default*; see Default).
func defaultUpstream(u *Upstream) {
	u.Keepalive.Duration = 30e9
	u.Protocol = "3.1.1"
	u.Inflight = 1024
	u.BackoffMin.Duration = 250e6
	u.BackoffMax.Duration = 2e9
	u.ConnectTimeout.Duration = 10e9
}

// Load reads and checks a configuration file. On any problem it returns
// Errors listing all of them with their lines.
func Load(path string) (*Config, error) {
	src, err := readLimited(path)
	if err == errTooBig {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	if err != nil {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("cannot read the configuration: %v", unwrapPathErr(err))}}
	}
	return Parse(path, string(src))
}

// Parse checks configuration text; name is used in messages. With value
// errors it returns them and the decoded configuration (not to be run, only
// to check further); with syntax or shape errors the configuration is nil.
func Parse(name, src string) (*Config, error) {
	if len(src) > MaxFileSize {
		return nil, Errors{{File: name, Msg: errTooBig.Error()}}
	}
	if line, depth := checkNesting(src); line > 0 {
		return nil, Errors{{File: name, Line: line, Msg: fmt.Sprintf("arrays and inline tables nest %d deep here; at most %d are allowed (write nested tables as [a.b] headers)", depth, MaxNesting)}}
	}
	c := Default()
	c.file = name
	c.lines = indexLines(src)
	var errs Errors
	var badPaths []string
	report := func(path, msg string) {
		errs = append(errs, &Error{File: name, Line: c.lines.line(path), Key: path, Msg: msg})
		badPaths = append(badPaths, path)
	}

	var raw map[string]any
	if _, err := toml.Decode(src, &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if strings.Contains(pe.Message, `got '\n'`) && line > 1 {
				line-- // the parser stands on the next line when a line ends too soon
			}
			return nil, Errors{{File: name, Line: line, Msg: "TOML syntax: " + pe.Message}}
		}
		return nil, Errors{{File: name, Msg: "TOML syntax: " + err.Error()}}
	}

	// Shape first: unknown keys and wrong types everywhere, with lines.
	checkShape(raw, reflect.TypeOf(c), "", map[string]bool{"device": true, "upstream": true}, report)
	if u, ok := raw["upstream"].(map[string]any); ok {
		checkShape(u, reflect.TypeOf(Upstream{}), "upstream", map[string]bool{"address": true}, report)
	} else if _, present := raw["upstream"]; present {
		report("upstream", "wants a table ([upstream])")
	}
	var devs []map[string]any
	switch d := raw["device"].(type) {
	case nil:
	case []map[string]any:
		devs = d
	default:
		report("device", "wants tables: write each device as [[device]]")
	}
	for i, d := range devs {
		checkShape(d, reflect.TypeOf(Device{}), fmt.Sprintf("device[%d]", i), driverKeys(d), report)
	}
	if len(errs) > 0 {
		// Drop what is wrong and go on, so value mistakes elsewhere are
		// reported in the same run. Lines come from the original text.
		for _, p := range badPaths {
			deletePath(raw, p)
		}
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(raw); err != nil {
			return nil, errs
		}
		src = b.String()
	}

	// Decode. Shapes are right now, so this only fails on values the
	// custom decoders refuse.
	var doc struct {
		Gateway  *Gateway         `toml:"gateway"`
		Broker   *Broker          `toml:"broker"`
		Upstream toml.Primitive   `toml:"upstream"`
		Buffer   *Buffer          `toml:"buffer"`
		Device   []toml.Primitive `toml:"device"`

		Availability  *Availability  `toml:"availability"`
		HomeAssistant *HomeAssistant `toml:"homeassistant"`
		Sparkplug     *Sparkplug     `toml:"sparkplug"`
	}
	doc.Gateway, doc.Broker, doc.Buffer = &c.Gateway, &c.Broker, &c.Buffer
	doc.Availability, doc.HomeAssistant, doc.Sparkplug = &c.Availability, &c.HomeAssistant, &c.Sparkplug
	md, err := toml.Decode(src, &doc)
	if err != nil {
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	c.md, c.prims = md, doc.Device
	if md.IsDefined("upstream") {
		u := &Upstream{}
		defaultUpstream(u)
		if err := md.PrimitiveDecode(doc.Upstream, u); err != nil {
			report("upstream.address", strings.TrimPrefix(err.Error(), "toml: "))
			return nil, errs
		}
		applyProfile(u, func(key string) bool { return md.IsDefined("upstream", key) })
		c.Upstream = u
	}
	for i, p := range doc.Device {
		d := Device{index: i, cfg: &c}
		var common struct {
			Name  string `toml:"name"`
			Type  string `toml:"type"`
			Topic string `toml:"topic"`
			QoS   *int   `toml:"qos"`
		}
		if err := md.PrimitiveDecode(p, &common); err != nil {
			report(fmt.Sprintf("device[%d]", i), err.Error())
			continue
		}
		d.Name, d.Type, d.Topic, d.QoS = common.Name, common.Type, common.Topic, 1
		if common.QoS != nil {
			d.QoS = *common.QoS
		}
		c.Devices = append(c.Devices, d)
	}
	c.validate(report)
	c.validateEcosystem(report)
	sortErrors(errs)
	if len(errs) > 0 {
		// The configuration is refused, but returned too: check-config
		// goes on to check the devices' own keys, so every mistake is
		// listed in one run.
		return &c, errs
	}
	return &c, nil
}

// driverKeys returns the keys of a device table that belong to its driver, so
// the common shape check skips them (the driver's Decode checks them).
func driverKeys(d map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range d {
		if !commonDeviceKeys[k] {
			out[k] = true
		}
	}
	return out
}

// File is the path the configuration was read from.
func (c *Config) File() string { return c.file }

// ErrorAt makes an Error for a key path, e.g. "upstream.tls.cafile".
func (c *Config) ErrorAt(path, msg string) *Error {
	return &Error{File: c.file, Line: c.lines.line(path), Key: path, Msg: msg}
}

// Path is this device's key path, e.g. "device[2]".
func (d *Device) Path() string { return fmt.Sprintf("device[%d]", d.index) }

// Decode fills a driver's configuration struct v from this device's table,
// strictly: keys that neither the gateway nor v know are errors, as are values
// of the wrong type. Errors carry file and line.
func (d *Device) Decode(v any) error {
	c := d.cfg
	var raw map[string]any
	if err := c.md.PrimitiveDecode(c.prims[d.index], &raw); err != nil {
		return c.ErrorAt(d.Path(), err.Error())
	}
	var errs Errors
	checkShape(raw, reflect.TypeOf(v), d.Path(), commonDeviceKeys, func(path, msg string) {
		errs = append(errs, c.ErrorAt(path, msg))
	})
	if len(errs) > 0 {
		return errs
	}
	if err := c.md.PrimitiveDecode(c.prims[d.index], v); err != nil {
		// A value its type refused (a duration that does not parse): name
		// the key and its line, as validation does for the gateway's keys.
		var pe toml.ParseError
		if errors.As(err, &pe) && pe.Position.Line > 0 && pe.LastKey != "" {
			return &Error{File: c.file, Line: pe.Position.Line, Key: d.Path() + "." + strings.TrimPrefix(pe.LastKey, "device."), Msg: pe.Message}
		}
		return c.ErrorAt(d.Path(), strings.TrimPrefix(err.Error(), "toml: "))
	}
	return nil
}

// keyPrefix matches a driver error that starts with its key name: "baud: …".
var keyPrefix = regexp.MustCompile(`^([a-z0-9_]+(?:\[[0-9]+\])?(?:\.[a-z0-9_]+(?:\[[0-9]+\])?)*): `)

// DeviceError positions an error a driver returned from its constructor.
// Drivers start their messages with the key at fault ("baud: 9601 is not a
// standard rate"); that key's line is used, else the device's header line.
func (d *Device) DeviceError(err error) error {
	var ce *Error
	var ces Errors
	if errors.As(err, &ce) || errors.As(err, &ces) {
		return err
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out Errors
		for _, e := range j.Unwrap() {
			out = append(out, asErrors(d.DeviceError(e))...)
		}
		sortErrors(out)
		return out
	}
	msg := err.Error()
	path := d.Path()
	if m := keyPrefix.FindStringSubmatch(msg); m != nil {
		if l := d.cfg.lines.line(path + "." + m[1]); l != d.cfg.lines.line(path) {
			return &Error{File: d.cfg.file, Line: l, Key: path + "." + m[1], Msg: strings.TrimPrefix(msg, m[0])}
		}
	}
	return &Error{File: d.cfg.file, Line: d.cfg.lines.line(path), Key: path + " (" + d.Name + ")", Msg: msg}
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// validHostPort reports whether s is host:port with a numeric port.
func validHostPort(s string) bool {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	_ = h
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// ExternalAddress returns the host:port of [broker] external: a URL
// ("mqtt://127.0.0.1:1883") or a bare host:port, plain TCP either way.
func ExternalAddress(a string) (hostport string, err error) {
	if !strings.Contains(a, "://") {
		if !validHostPort(a) {
			return "", fmt.Errorf("%q is not host:port or a URL like mqtt://127.0.0.1:1883", a)
		}
		return a, nil
	}
	useTLS, hp, err := ParseAddress(a)
	if err != nil {
		return "", err
	}
	if useTLS {
		return "", fmt.Errorf("%q: TLS to the local broker is not supported; use its plain loopback listener, e.g. \"mqtt://127.0.0.1:1883\"", a)
	}
	return hp, nil
}

// ParseAddress splits an upstream address ("mqtts://host:8883", "mqtt://host",
// "tls://host:8883", "host:8883") into whether it uses TLS and host:port.
func ParseAddress(a string) (useTLS bool, hostport string, err error) {
	if !strings.Contains(a, "://") {
		if !validHostPort(a) {
			return false, "", fmt.Errorf("%q is not host:port or a URL like mqtts://host:8883", a)
		}
		return true, a, nil
	}
	u, err := url.Parse(a)
	if err != nil {
		return false, "", fmt.Errorf("%q is not a URL: %v", a, err)
	}
	port := u.Port()
	switch u.Scheme {
	case "mqtts", "ssl", "tls":
		useTLS = true
		if port == "" {
			port = "8883"
		}
	case "mqtt", "tcp":
		if port == "" {
			port = "1883"
		}
	default:
		return false, "", fmt.Errorf("%q: scheme %q is not one of mqtts, mqtt, ssl, tls, tcp", a, u.Scheme)
	}
	if u.Hostname() == "" {
		return false, "", fmt.Errorf("%q has no host", a)
	}
	return useTLS, net.JoinHostPort(u.Hostname(), port), nil
}

// deletePath removes a key such as "upstream.topic[0].qos" from decoded TOML.
func deletePath(m map[string]any, path string) {
	parts := strings.Split(path, ".")
	var cur any = m
	for i, p := range parts {
		idx := -1
		if j := strings.IndexByte(p, '['); j >= 0 {
			idx, _ = strconv.Atoi(strings.TrimSuffix(p[j+1:], "]"))
			p = p[:j]
		}
		mm, ok := cur.(map[string]any)
		if !ok {
			return
		}
		if i == len(parts)-1 && idx < 0 {
			delete(mm, p)
			return
		}
		cur = mm[p]
		if idx >= 0 {
			switch l := cur.(type) {
			case []map[string]any:
				if idx >= len(l) {
					return
				}
				cur = l[idx]
			case []any:
				if idx >= len(l) {
					return
				}
				if i == len(parts)-1 {
					mm[p] = append(l[:idx:idx], l[idx+1:]...)
					return
				}
				cur = l[idx]
			default:
				return
			}
		}
	}
}

// sortErrors orders errors by line, keeping the order of equal lines.
func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
}

func asErrors(err error) Errors {
	var es Errors
	var e *Error
	switch {
	case errors.As(err, &es):
		return es
	case errors.As(err, &e):
		return Errors{e}
	}
	return nil
}
