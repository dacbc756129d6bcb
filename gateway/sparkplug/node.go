// Package sparkplug makes the gateway a Sparkplug B edge node on the upstream
// broker: NBIRTH (with bdSeq and the node's metrics) first on every
// connection, NDEATH with the same bdSeq as the connection's Last Will,
// DBIRTH, DDATA and DDEATH per device with typed metrics, seq 0-255 on every
// message but NDEATH, NCMD "Node Control/Rebirth" answered with a fresh
// birth, and DCMD driving outputs. Readings made while the link is down are
// kept (bounded) and sent after the next birth as historical metrics, as the
// specification's store-and-forward section describes; with a PendingFile
// they survive a restart during the outage too.
//
// Sparkplug messages bypass the outbox: the specification sends births and
// data at QoS 0 and numbers them per connection, so a stored copy from an
// earlier connection would carry a wrong seq.
package sparkplug

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgegw/edgegw/devices"
)

// Namespace is the Sparkplug B topic namespace.
const Namespace = "spBv1.0"

// Device is one configured device as the node reports it.
type Device struct {
	Name, Type string
	Desc       devices.Description
	// Command, when set, drives the device (an output) with "on" or "off".
	Command func(payload []byte) error
}

// Options configure a Node.
type Options struct {
	GroupID, EdgeNodeID string
	Version             string
	Devices             []Device
	// StateFile keeps bdSeq across restarts.
	StateFile string
	// PendingFile, when set, keeps the readings made while the link is
	// down across restarts (see pending).
	PendingFile string
	// MaxStored bounds the readings kept while the link is down (default
	// 10000); beyond it the oldest are dropped and counted.
	MaxStored int
	// QueueSize bounds the readings Offer hands to Run (default
	// DefaultQueueSize); beyond it Offer drops and counts them.
	QueueSize int
	Now       func() time.Time
	Logger    *slog.Logger
}

type pubFunc func(topic string, payload []byte, qos byte, retain bool) error

// stored is a reading kept while the link was down.
type stored struct {
	device  string
	payload []byte // the reading's JSON, for the pending file
	metrics []Metric
}

// Node is the edge node. Its methods are safe for concurrent use.
type Node struct {
	o    Options
	devs map[string]*Device

	mu    sync.Mutex
	bdSeq uint64
	// bdSeqSet: bdSeq holds this process's current number; bdSeqUsed: a
	// connection was accepted with it (the next CONNECT takes a new one).
	bdSeqSet, bdSeqUsed bool
	seq                 uint64 // next seq
	pub                 pubFunc
	last                map[string]map[string]Metric // last value per device and metric
	online              map[string]bool              // devices born and not dead
	store               []stored
	dropped             uint64
	pend                *pending
	q                   queue

	// statsMu guards stats (Stored included, kept equal to len(store)).
	// It is never held while waiting on anything, so Stats answers while
	// mu is held by a write to a stalled upstream link.
	statsMu sync.Mutex
	stats   Stats
}

// Stats are the node's counters, for metrics.
type Stats struct {
	Stored          int    // readings waiting for the next birth
	Dropped         uint64 // readings dropped from a full store (oldest first)
	Historical      uint64 // readings sent as historical
	CommandsRefused uint64 // NCMD/DCMD that were not Sparkplug B or not supported
	BadReadings     uint64 // local payloads on a device topic that are not the gateway's JSON
	QueueDropped    uint64 // readings Offer dropped because QueueSize already waited for Run
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.statsMu.Lock()
	s := n.stats
	n.statsMu.Unlock()
	s.QueueDropped = n.q.dropped.Load()
	return s
}

// New makes a Node.
func New(o Options) *Node {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxStored <= 0 {
		o.MaxStored = 10000
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	n := &Node{o: o, devs: map[string]*Device{}, last: map[string]map[string]Metric{}, online: map[string]bool{}}
	n.q.ch = make(chan queued, o.QueueSize)
	for i := range o.Devices {
		d := &n.o.Devices[i]
		n.devs[d.Name] = d
		n.online[d.Name] = true
	}
	if o.PendingFile != "" {
		n.pend = &pending{path: o.PendingFile}
		entries, bad, err := n.pend.load()
		if err != nil {
			n.o.Logger.Warn("sparkplug: the readings kept during the last outage are unreadable; they are not sent", "file", o.PendingFile, "error", err)
		}
		for _, e := range entries {
			d, ok := n.devs[e.Device]
			if !ok {
				bad++ // a device no longer configured
				continue
			}
			ms, err := readingMetrics(d, e.Payload)
			if err != nil {
				bad++
				continue
			}
			n.keepLocked(stored{device: e.Device, payload: e.Payload, metrics: ms})
		}
		if len(entries) > 0 || bad > 0 {
			n.o.Logger.Info("sparkplug: readings of an earlier outage will go up as historical after the next birth", "readings", len(n.store), "unusable", bad)
		}
	}
	return n
}

// keepLocked stores a reading for the next birth, dropping the oldest
// beyond MaxStored.
func (n *Node) keepLocked(s stored) {
	dropped := len(n.store) >= n.o.MaxStored
	if dropped {
		n.store = n.store[1:]
		n.dropped++
	}
	n.store = append(n.store, s)
	n.count(func(st *Stats) {
		if dropped {
			st.Dropped++
		}
		st.Stored = len(n.store)
	})
}

// count updates the counters.
func (n *Node) count(f func(*Stats)) {
	n.statsMu.Lock()
	f(&n.stats)
	n.statsMu.Unlock()
}

// Close closes the pending file.
func (n *Node) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pend != nil {
		n.pend.close()
	}
}

// Topic is the topic of a message type for the node ("" device) or a device.
func (n *Node) Topic(typ, device string) string {
	t := Namespace + "/" + n.o.GroupID + "/" + typ + "/" + n.o.EdgeNodeID
	if device != "" {
		t += "/" + device
	}
	return t
}

// CommandTopics are the topics the node takes commands on: NCMD and DCMD
// for every device.
func (n *Node) CommandTopics() (ncmd, dcmd string) {
	return n.Topic("NCMD", ""), n.Topic("DCMD", "+")
}

func (n *Node) now() uint64 { return uint64(n.o.Now().UnixMilli()) }

// Will is the bridge's Will hook: it returns NDEATH carrying this
// connection's bdSeq. bdSeq advances (and is saved in StateFile, before
// CONNECT, so a restart never reuses it) once per connection the broker
// accepted: a refused or failed CONNECT registered no Will, so the next
// attempt reuses its number and writes nothing — an outage costs the SD
// card no write per retry.
func (n *Node) Will() (topic string, payload []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.bdSeqSet || n.bdSeqUsed {
		if !n.bdSeqSet {
			prev, err := readBdSeq(n.o.StateFile)
			if err != nil {
				n.o.Logger.Warn("sparkplug: the saved bdSeq is unreadable; starting from 0", "file", n.o.StateFile, "error", err)
			}
			n.bdSeq = uint64(prev+1) % 256 // prev is -1 without a file
		} else {
			n.bdSeq = (n.bdSeq + 1) % 256
		}
		n.bdSeqSet, n.bdSeqUsed = true, false
		if err := os.WriteFile(n.o.StateFile, []byte(strconv.FormatUint(n.bdSeq, 10)+"\n"), 0o640); err != nil {
			n.o.Logger.Warn("sparkplug: cannot save bdSeq; the next start may reuse it", "error", err)
		}
	}
	p := Payload{Timestamp: n.now(), Metrics: []Metric{{Name: "bdSeq", Type: Int64, Value: int64(n.bdSeq)}}}
	return n.Topic("NDEATH", ""), p.Encode()
}

func readBdSeq(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v < 0 || v > 255 {
		return -1, fmt.Errorf("%q is not a bdSeq (0-255)", strings.TrimSpace(string(b)))
	}
	return v, nil
}

// OnConnect is the bridge's OnConnect hook: NBIRTH, a DBIRTH per device,
// then what was stored while the link was down, as historical DDATA; pub
// stays the node's way up until it fails.
func (n *Node) OnConnect(pub func(topic string, payload []byte, qos byte, retain bool) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pub = pub
	n.bdSeqUsed = true
	if err := n.birthLocked(); err != nil {
		n.lostLocked(err)
		return
	}
	kept := n.store
	n.store = nil
	for i, s := range kept {
		for j := range s.metrics {
			s.metrics[j].Historical = true
		}
		if err := n.sendLocked("DDATA", s.device, s.metrics); err != nil {
			n.store = append(kept[i:], n.store...)
			n.count(func(st *Stats) { st.Stored = len(n.store) })
			n.lostLocked(err)
			n.rewritePendingLocked()
			return
		}
	}
	n.count(func(st *Stats) { st.Historical += uint64(len(kept)); st.Stored = len(n.store) })
	if len(kept) > 0 {
		n.rewritePendingLocked()
	}
	if len(kept) > 0 {
		n.o.Logger.Info("sparkplug: readings stored during the outage sent as historical", "messages", len(kept), "dropped", n.dropped)
		n.dropped = 0
	}
}

// birthLocked sends NBIRTH with seq 0 and the DBIRTH of each online device.
func (n *Node) birthLocked() error {
	n.seq = 0
	ts := n.now()
	node := []Metric{
		{Name: "bdSeq", Timestamp: ts, Type: Int64, Value: int64(n.bdSeq)},
		{Name: "Node Control/Rebirth", Timestamp: ts, Type: Boolean, Value: false},
		{Name: "Properties/Software", Timestamp: ts, Type: String, Value: "edgegw " + n.o.Version},
		{Name: "Properties/Devices", Timestamp: ts, Type: Int64, Value: int64(len(n.o.Devices))},
	}
	if err := n.sendLocked("NBIRTH", "", node); err != nil {
		return err
	}
	for _, d := range n.o.Devices {
		if !n.online[d.Name] {
			continue
		}
		if err := n.sendLocked("DBIRTH", d.Name, n.birthMetrics(&d, ts)); err != nil {
			return err
		}
	}
	return nil
}

// birthMetrics are every metric of a device, with its last value (or
// null), its type and its unit as the "engUnit" property.
func (n *Node) birthMetrics(d *Device, ts uint64) []Metric {
	last := n.last[d.Name]
	var ms []Metric
	add := func(name string, typ DataType, unit string) {
		m := Metric{Name: name, Timestamp: ts, Type: typ, Null: true}
		if l, ok := last[name]; ok {
			m.Value, m.Null, m.Timestamp = l.Value, false, l.Timestamp
		}
		if unit != "" {
			m.Properties = map[string]string{"engUnit": unit}
		}
		ms = append(ms, m)
	}
	if d.Desc.Identity {
		add("uid", String, "")
	}
	for _, v := range d.Desc.Values {
		add(v.Name, dataType(v.Type), v.Unit)
	}
	return ms
}

func dataType(t devices.ValueType) DataType {
	switch t {
	case devices.Int:
		return Int64
	case devices.Bool:
		return Boolean
	case devices.String:
		return String
	}
	return Double
}

// sendLocked publishes one message with the next seq.
func (n *Node) sendLocked(typ, device string, ms []Metric) error {
	if n.pub == nil {
		return errors.New("sparkplug: not connected")
	}
	p := Payload{Timestamp: n.now(), Metrics: ms, Seq: n.seq, HasSeq: true}
	if err := n.pub(n.Topic(typ, device), p.Encode(), 0, false); err != nil {
		return err
	}
	n.seq = (n.seq + 1) % 256
	return nil
}

// lostLocked forgets the connection after a failed publish.
func (n *Node) lostLocked(err error) {
	if n.pub != nil {
		n.o.Logger.Debug("sparkplug: link lost; storing readings until the next birth", "error", err)
	}
	n.pub = nil
}

// Reading takes a device's reading payload (the gateway's JSON) and sends
// it as DDATA, or stores it while the link is down. It runs on the caller
// and may wait on the upstream socket or the pending file: a local broker
// subscription handler must use Offer instead.
func (n *Node) Reading(device string, payload []byte) {
	if _, ok := n.devs[device]; !ok {
		return
	}
	ms, err := readingMetrics(n.devs[device], payload)
	if err != nil {
		n.badReading(device, err)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rememberLocked(device, ms)
	if n.pub != nil {
		if err := n.sendLocked("DDATA", device, ms); err == nil {
			return
		} else {
			n.lostLocked(err)
		}
	}
	n.storeLocked(device, append([]byte(nil), payload...), ms)
}

// badReading counts and logs a payload that is not the gateway's JSON.
func (n *Node) badReading(device string, err error) {
	n.o.Logger.Warn("sparkplug: a reading that is not the gateway's JSON; skipped", "device", device, "error", err)
	n.count(func(st *Stats) { st.BadReadings++ })
}

// rememberLocked makes ms the device's last values (for the next DBIRTH).
func (n *Node) rememberLocked(device string, ms []Metric) {
	last := n.last[device]
	if last == nil {
		last = map[string]Metric{}
		n.last[device] = last
	}
	for _, m := range ms {
		last[m.Name] = m
	}
}

// storeLocked keeps a reading for the next birth, in memory and in the
// pending file.
func (n *Node) storeLocked(device string, payload []byte, ms []Metric) {
	s := stored{device: device, payload: payload, metrics: ms}
	n.keepLocked(s)
	if n.pend != nil {
		if err := n.pend.add(device, s.payload); err != nil && n.pend.err == nil {
			n.pend.err = err
			n.o.Logger.Warn("sparkplug: cannot keep readings on disk during the outage; they are kept in memory only", "error", err)
		}
		if n.pend.lines > 2*n.o.MaxStored {
			n.rewritePendingLocked()
		}
	}
}

// rewritePendingLocked makes the pending file hold what is stored now.
func (n *Node) rewritePendingLocked() {
	if n.pend == nil {
		return
	}
	if err := n.pend.rewrite(n.store); err != nil {
		n.o.Logger.Warn("sparkplug: cannot rewrite the readings kept during the outage", "error", err)
	}
}

// readingMetrics turns the JSON payload of a reading into metrics.
func readingMetrics(d *Device, payload []byte) ([]Metric, error) {
	var r struct {
		TS     string                     `json:"ts"`
		UID    string                     `json:"uid"`
		Values map[string]json.RawMessage `json:"values"`
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, err
	}
	ts := uint64(time.Now().UnixMilli())
	if t, err := time.Parse(time.RFC3339Nano, r.TS); err == nil {
		ts = uint64(t.UnixMilli())
	}
	var ms []Metric
	if r.UID != "" {
		ms = append(ms, Metric{Name: "uid", Timestamp: ts, Type: String, Value: r.UID})
	}
	seen := map[string]bool{}
	add := func(name string, typ DataType, raw json.RawMessage) {
		m := Metric{Name: name, Timestamp: ts, Type: typ}
		var err error
		switch typ {
		case Int64:
			var v int64
			err = json.Unmarshal(raw, &v)
			m.Value = v
		case Boolean:
			var v bool
			err = json.Unmarshal(raw, &v)
			m.Value = v
		case String:
			var v string
			err = json.Unmarshal(raw, &v)
			m.Value = v
		default:
			var v float64
			err = json.Unmarshal(raw, &v)
			m.Value = v
		}
		if err != nil || string(raw) == "null" {
			m.Value, m.Null = nil, true
		}
		ms = append(ms, m)
	}
	for _, v := range d.Desc.Values {
		if raw, ok := r.Values[v.Name]; ok {
			add(v.Name, dataType(v.Type), raw)
			seen[v.Name] = true
		}
	}
	for name, raw := range r.Values {
		if seen[name] {
			continue
		}
		// Not described: the JSON kind decides.
		typ := Double
		switch {
		case len(raw) > 0 && raw[0] == '"':
			typ = String
		case string(raw) == "true" || string(raw) == "false":
			typ = Boolean
		}
		add(name, typ, raw)
	}
	return ms, nil
}

// DeviceState sends DBIRTH when a device comes back and DDEATH when it
// goes offline.
func (n *Node) DeviceState(device string, up bool) {
	d, ok := n.devs[device]
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.online[device] == up {
		return
	}
	n.online[device] = up
	if n.pub == nil {
		return // the next NBIRTH tells
	}
	var err error
	if up {
		err = n.sendLocked("DBIRTH", device, n.birthMetrics(d, n.now()))
	} else {
		err = n.sendLocked("DDEATH", device, nil)
	}
	if err != nil {
		n.lostLocked(err)
	}
}

// Command handles an NCMD or DCMD payload that came down.
func (n *Node) Command(topic string, payload []byte) {
	p, err := Decode(payload)
	if err != nil {
		n.o.Logger.Warn("sparkplug: a command that is not a Sparkplug B payload; ignored", "topic", topic, "error", err)
		n.refused()
		return
	}
	if topic == n.Topic("NCMD", "") {
		for _, m := range p.Metrics {
			if m.Name == "Node Control/Rebirth" && m.Value == true {
				n.o.Logger.Info("sparkplug: rebirth requested")
				n.mu.Lock()
				if n.pub != nil {
					if err := n.birthLocked(); err != nil {
						n.lostLocked(err)
					}
				}
				n.mu.Unlock()
				continue
			}
			n.o.Logger.Warn("sparkplug: NCMD metric not supported; ignored", "metric", m.Name)
			n.refused()
		}
		return
	}
	device := topic[strings.LastIndexByte(topic, '/')+1:]
	d, ok := n.devs[device]
	if !ok {
		n.o.Logger.Warn("sparkplug: DCMD for a device this node does not have; ignored", "topic", topic)
		n.refused()
		return
	}
	for _, m := range p.Metrics {
		on, isBool := m.Value.(bool)
		if m.Name != "state" || !isBool || d.Command == nil {
			n.o.Logger.Warn("sparkplug: DCMD metric not supported (outputs take the Boolean metric \"state\"); ignored", "device", device, "metric", m.Name)
			n.refused()
			continue
		}
		cmd := "off"
		if on {
			cmd = "on"
		}
		if err := d.Command([]byte(cmd)); err != nil {
			n.o.Logger.Warn("sparkplug: DCMD not carried out", "device", device, "error", err)
			n.refused()
		}
	}
}

// Stored is how many readings wait for the next birth.
func (n *Node) Stored() int { return n.Stats().Stored }

func (n *Node) refused() { n.count(func(st *Stats) { st.CommandsRefused++ }) }
